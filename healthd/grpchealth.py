"""The gRPC health server (reference §12): `grpc.health.v1.Health` on `server.grpc_listen`.

A view: it reads the store and asks the core for an evaluation (health.Views), never a check.

    service ""/readiness  the readiness group   healthy, degraded → SERVING
    liveness, startup     those groups          unhealthy, unknown, draining → NOT_SERVING
    a check's name        that check's status   pass, warn → SERVING; anything else → NOT_SERVING
    anything else         NOT_FOUND (Check), SERVICE_UNKNOWN (Watch)

`Check` is a probe: the call's deadline is its budget, through the same precedence list,
`deadline.max` cap and `deadline.margin` reserve as an HTTP probe (deadline.py), and it runs
what an HTTP probe would run (`on_demand` checks) within it. `Watch` sends the current
status, then one message per change of it (the store's events), holding a slot of
`server.max_watchers` (`Watchers`), and ends when the listeners close: it never holds
`shutdown.grace`, while a `Check` in flight then is answered within it. `List` gives every
group, and every check where `show_details` allows (check names are details).

The server is grpcio's `grpc.aio` on healthd's own event loop (the `grpc` extra).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncGenerator, Awaitable, Iterator
from typing import Any, NoReturn, cast

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from multidict import CIMultiDict

from healthd import tracecontext
from healthd.deadline import format_grpc_timeout, inbound_budget
from healthd.errors import BudgetError, ConfigError
from healthd.events import Event
from healthd.groups import HEALTH, LIVENESS, PROBED, READINESS, STARTUP
from healthd.health import Views
from healthd.listeners import split_listen
from healthd.model import State, Status
from healthd.watchers import Watchers
from healthd.web.base import bearer_matches
from healthd.web.probes import ProbeCounter

log = logging.getLogger("healthd")
Response = health_pb2.HealthCheckResponse
SERVING: int = Response.SERVING
NOT_SERVING: int = Response.NOT_SERVING
SERVICE_UNKNOWN: int = Response.SERVICE_UNKNOWN
GROUP_SERVICES = {"": READINESS, READINESS: READINESS, LIVENESS: LIVENESS, STARTUP: STARTUP}
"""Service name → group; any other name is a check's (groups win over a check so named)."""
ENDPOINT = "grpc"  # the `endpoint` label of the probe metrics for answered `Check`s
CODES = {SERVING: "SERVING", NOT_SERVING: "NOT_SERVING"}  # their `code` label: what was sent
OPTIONS = [("grpc.so_reuseport", 0)]  # grpcio's default shares a taken port with its owner


def group_serving(state: State) -> int:
    return SERVING if state in (State.HEALTHY, State.DEGRADED) else NOT_SERVING


def check_serving(status: Status) -> int:
    return SERVING if status in (Status.PASS, Status.WARN) else NOT_SERVING


class HealthService:
    """`grpc.health.v1.Health`'s `Check`, `Watch` and `List` over one core's store."""

    def __init__(
        self,
        views: Views,
        watchers: Watchers,
        metrics: ProbeCounter | None = None,
        tracing: bool = False,
    ) -> None:
        self.views, self.store, self.watchers, self.metrics = views, views.store, watchers, metrics
        self.tracing = tracing  # continue the caller's trace (a tracer is configured)

    # --- reading the store -----------------------------------------------------------------------

    def target(self, service: str) -> tuple[str, str | None] | None:
        """(group, None) for a group's service, (HEALTH, check) for a check's, None: unknown."""
        group = GROUP_SERVICES.get(service)
        if group is not None:
            return group, None
        return (HEALTH, service) if self.store.spec(service) is not None else None

    def status(self, service: str) -> int:
        """The service's serving status now, from the store (SERVICE_UNKNOWN: no such name)."""
        store, target = self.store, self.target(service)
        if target is None:
            return SERVICE_UNKNOWN
        group, check = target
        if check is None:
            return group_serving(store.current(group))
        state = store.check(check)
        return check_serving(state.status) if state is not None else SERVICE_UNKNOWN

    def changed(self, service: str, event: Event) -> int | None:
        """The service's status after `event`, or None when the event is not about it."""
        if event.kind == "reset":  # this reader fell behind the ring: read the store again
            return self.status(service)
        target = self.target(service)
        if target is None:
            return SERVICE_UNKNOWN  # reloaded away (or never there)
        group, check = target
        if check is None:
            ours = event.kind == "group" and event.name == group
            return group_serving(State(event.state)) if ours else None
        ours = event.kind == "check" and event.name == check
        return check_serving(Status(event.state)) if ours else None

    # --- the three methods -----------------------------------------------------------------------

    async def Check(self, request: Any, context: Any) -> Any:  # the method names are gRPC's
        """One evaluation under the call's deadline, as an HTTP probe of the same service."""
        started = time.perf_counter()
        views, service = self.views, request.service
        target = self.target(service)
        if target is None:
            await _abort(context, grpc.StatusCode.NOT_FOUND, _unknown(service))
        group, check = target
        try:
            budget = self._budget(context)
        except BudgetError as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        deadline = views.deadline(budget)
        with self._trace(context):
            evaluation = await views.evaluate(group, deadline, only=check)
        if check is None:
            status = group_serving(evaluation.state)
        else:
            seen = self.store.view(group, only=check, late=evaluation.late)
            if not seen:  # reloaded away while it ran
                await _abort(context, grpc.StatusCode.NOT_FOUND, _unknown(service))
            status = check_serving(seen[0].status)
        if self.metrics is not None:
            self.metrics.probe(ENDPOINT, CODES[status], time.perf_counter() - started, budget)
        return Response(status=status)

    async def Watch(self, request: Any, context: Any) -> None:
        """The current status at once, then one message per change, until the listeners close."""
        if not self.watchers.enter("grpc"):
            limit = self.watchers.limit
            await _abort(
                context,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{limit} streams open already (server.max_watchers: {limit})",
            )
        try:
            await until_set(self.watchers.closed, self._stream(request.service, context))
        finally:
            self.watchers.leave("grpc")

    async def List(self, request: Any, context: Any) -> Any:
        """Every group's service, and every check's where `show_details` allows."""
        names = ["", *PROBED]
        if self._details(context):
            names += [spec.name for spec in self.store.specs()]
        statuses = {name: Response(status=self.status(name)) for name in names}
        return health_pb2.HealthListResponse(statuses=statuses)

    # --- internals -------------------------------------------------------------------------------

    async def _stream(self, service: str, context: Any) -> None:
        store = self.store
        # From the ring's newest event on, taken before the first status is read: a change
        # while that first message is written is still sent after it.
        changes = cast("AsyncGenerator[Event, None]", store.changes(store.ring.last_id))
        async with contextlib.aclosing(changes):
            sent = self.status(service)
            await context.write(Response(status=sent))
            async for event in changes:
                status = self.changed(service, event)
                if status is not None and status != sent:
                    await context.write(Response(status=status))
                    sent = status

    def _budget(self, context: Any) -> float:
        """The caller's budget: the probe precedence list over the call's metadata, with the
        call's deadline as its `grpc-timeout`, and never past that deadline."""
        cfg = self.views.settings().deadline
        headers = _metadata(context)
        remaining = context.time_remaining()
        if remaining is not None:
            headers["grpc-timeout"] = format_grpc_timeout(remaining)
        budget = inbound_budget(
            {}, headers, default=cfg.default, maximum=cfg.max, offset=cfg.offset
        )
        return budget if remaining is None else min(budget, max(0.0, remaining))

    def _details(self, context: Any) -> bool:
        server = self.views.settings().server
        if server.show_details == "always":
            return True
        token = server.token.get_secret_value() if server.show_details != "never" else ""
        return bearer_matches(_metadata(context).get("authorization", ""), token)

    @contextlib.contextmanager
    def _trace(self, context: Any) -> Iterator[None]:
        """Continue the caller's trace (`traceparent` metadata) when tracing is on."""
        if not self.tracing:
            yield
            return
        with tracecontext.continued(_metadata(context)):
            yield


class GrpcHealth:
    """The server: started with the HTTP listeners, stopped when they close (lifecycle.py)."""

    def __init__(self, service: HealthService, address: str) -> None:
        self.service, self.address = service, address
        self.port = 0
        self.bound = address  # with the port grpcio chose for port 0
        self._server: Any = None
        self._stopping: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind `address` and serve; ConfigError (one line) when it cannot listen."""
        host, port = split_listen(self.address)
        bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        server = grpc.aio.server(options=OPTIONS)
        health_pb2_grpc.add_HealthServicer_to_server(self.service, server)
        try:
            self.port = server.add_insecure_port(bind)
        except RuntimeError:
            raise ConfigError(
                f"server.grpc_listen: cannot listen on {self.address}: {_why(host, port)}"
            ) from None
        await server.start()
        self._server = server
        self.bound = f"{self.address.rpartition(':')[0]}:{self.port}"

    def close(self, grace: float) -> asyncio.Task[None]:
        """Stop taking calls now; calls in flight get `grace` (Watch streams have ended by
        then: the daemon closed `Watchers` first). Idempotent: the same task every time."""
        if self._stopping is None:
            server, self._server = self._server, None
            self._stopping = asyncio.get_running_loop().create_task(_stop(server, grace))
        return self._stopping


async def start(
    views: Views,
    watchers: Watchers,
    metrics: ProbeCounter | None,
    address: str,
    *,
    tracing: bool = False,
) -> GrpcHealth:
    """A started gRPC health server on `address` (`server.grpc_listen`)."""
    health = GrpcHealth(HealthService(views, watchers, metrics, tracing), address)
    await health.start()
    loop = type(asyncio.get_running_loop()).__module__
    if loop.startswith("uvloop") and any(s.kind == "exec" for s in views.store.specs()):
        log.warning(
            "gRPC health under uvloop: exec checks' children can die in grpcio's fork "
            "handlers; run exec checks on the default asyncio loop (unset HEALTHD_EVENT_LOOP)"
        )
    return health


async def until_set(event: asyncio.Event, body: Awaitable[None]) -> None:
    """Await `body` until it ends or `event` is set; then it is cancelled, whatever it was
    waiting on (a change, or a write to a client that does not read), and this returns.

    ATTENTION: the cancellation comes from `asyncio.timeout`, so one from outside (the
    client went away, the server stopped) still propagates; `inside` keeps a late callback
    from rescheduling a scope that has exited.
    """
    loop, inside = asyncio.get_running_loop(), True
    waiter = loop.create_task(event.wait())
    try:
        async with asyncio.timeout(None) as scope:

            def end(_: object) -> None:
                if inside:
                    scope.reschedule(loop.time())

            waiter.add_done_callback(end)
            await body
    except TimeoutError:
        if not scope.expired():
            raise
    finally:
        inside = False
        waiter.cancel()


async def _stop(server: Any, grace: float) -> None:
    if server is not None:
        await server.stop(grace)


def _metadata(context: Any) -> CIMultiDict[str]:
    """The call's text metadata as headers (binary `-bin` entries left out)."""
    return CIMultiDict(
        (key, value) for key, value in context.invocation_metadata() or () if isinstance(value, str)
    )


async def _abort(context: Any, code: Any, details: str) -> NoReturn:
    """End the call with `code` (grpc.aio's `abort` raises; this says so to the types)."""
    await context.abort(code, details)
    raise AssertionError("grpc.aio's abort returned")  # pragma: no cover


def _unknown(service: str) -> str:
    named = f"{service!r:.80}"
    return f"no group or check named {named} (use '', readiness, liveness, startup or a check)"


def _why(host: str, port: int) -> str:
    """Why grpcio could not bind (it only says that it could not): ask the kernel."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.create_server((host, port), family=family):
            return "grpcio could not bind it"
    except OSError as exc:  # create_server adds the address to strerror: the bare reason
        return os.strerror(exc.errno) if exc.errno else str(exc)
