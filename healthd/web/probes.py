"""The probe listener (DESIGN §5): /livez /readyz /startupz, per-check paths, /health.

Handlers only parse the request, ask the engine, and pick a renderer: every bad input
is a 4xx with a one-line message, never a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware
from multidict import CIMultiDictProxy

from healthd import render
from healthd.deadline import HEADER, Deadline, inbound_budget
from healthd.engine import Engine, Observer
from healthd.errors import BudgetError
from healthd.model import Snapshot, State

MAX_BODY = 64 * 1024
ENGINE = web.AppKey("engine", Engine)
JSON = "application/json"
CACHED_HEADERS = {"Content-Type": JSON, "Cache-Control": "no-store"}
NO_QUERY: dict[str, str] = {}
ENDPOINTS = {"livez": "liveness", "readyz": "readiness", "startupz": "startup", "health": "health"}
NO_STORE = {"Cache-Control": "no-store"}
FLAGS = {"": True, "1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=NO_STORE)


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """HTTP errors as one-line JSON with `no-store` (the admin API's error shape)."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error(exc.status, exc.reason)
    response.headers.update(NO_STORE)
    return response


class InFlight:
    """The requests being answered that wait on something (checks, a reload), for the
    lifecycle: it waits for them during `grace`, then cancels and logs the rest.

    ATTENTION: a cached probe answer never awaits, so it can neither be in flight at a
    signal nor be cancelled: only the paths that await are tracked, which keeps the hot
    path free of a middleware.
    """

    def __init__(self) -> None:
        self.requests: dict[asyncio.Task[Any], tuple[web.Request, float]] = {}
        self.served = 0
        self.closing = False  # shutting down: answers close their connections
        self.idle = asyncio.Event()  # set when closing and nothing is in flight

    @contextlib.contextmanager
    def track(self, request: web.Request) -> Iterator[None]:
        task = asyncio.current_task()
        assert task is not None
        self.requests[task] = (request, time.monotonic())
        self.idle.clear()  # a request read from a connection taken at the close counts too
        try:
            yield
        finally:
            del self.requests[task]
            if self.closing and not self.requests:
                self.idle.set()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        with self.track(request):
            return await handler(request)

    def finish(self, response: web.StreamResponse) -> web.StreamResponse:
        """Every answer is `Cache-Control: no-store`; once closing, every answer also closes
        its connection, so no idle keep-alive connection is left when the listeners close.

        Called by each handler on its way out (a response-prepare signal or a middleware
        would do the same at several times the cost on the hot path).
        """
        self.served += 1
        response.headers["Cache-Control"] = "no-store"
        if self.closing:
            response.force_close()
            response.headers[hdrs.CONNECTION] = "close"
        return response

    def wrap(self, handler: Handler) -> Handler:
        """`handler` whose answers go through `finish` (for routes others add, e.g. /metrics)."""

        async def finished(request: web.Request) -> web.StreamResponse:
            return self.finish(await handler(request))

        return finished


def authorized(request: web.Request, token: str) -> bool:
    """A valid `Authorization: Bearer <token>`, compared in constant time."""
    if not token:
        return False
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


def show_details(request: web.Request, engine: Engine) -> bool:
    server = engine.settings.server
    if server.show_details == "always":
        return True
    if server.show_details == "never":
        return False
    return authorized(request, server.token.get_secret_value())


def status_code(engine: Engine, state: State) -> int:
    return engine.settings.server.status_codes[state]


def respond(
    request: web.Request, engine: Engine, endpoint: str, snapshot: Snapshot
) -> web.Response:
    code = status_code(engine, snapshot.state)
    details = show_details(request, engine)
    if "verbose" in request.query:
        text = render.render_verbose(snapshot, endpoint, code < 400, details)
        return web.Response(text=text, status=code)
    if render.HEALTH_JSON in request.headers.get("Accept", ""):
        body = render.render_health_json(snapshot, details)
        return web.Response(body=body, status=code, content_type=render.HEALTH_JSON)
    return web.Response(body=render.render_json(snapshot, details), status=code, content_type=JSON)


@dataclass(frozen=True, slots=True)
class _Cached:
    version: int  # engine.version when it was rendered (a reload bumps it too, so the
    # settings that decided it was cacheable, show_details included, still hold)
    until: float  # monotonic time a member's result goes stale
    status: int
    body: bytes
    budget: float  # deadline.default then: what a request without a budget header gets
    budgets: dict[str, float] = field(default_factory=dict)  # X-Request-Timeout-Ms → budget


def _status_only(headers: CIMultiDictProxy[str], engine: Engine) -> bool:  # slow path
    """The answer is status-only JSON: no details shown, no health+json asked for."""
    details = engine.settings.server.show_details
    return (
        details == "never" or (details == "when_authorized" and "Authorization" not in headers)
    ) and render.HEALTH_JSON not in headers.get("Accept", "")


def _budget(headers: CIMultiDictProxy[str], engine: Engine) -> float | None:
    """The budget from a request's headers (it has no query), or None if unparseable."""
    cfg = engine.settings.deadline
    try:
        return inbound_budget(
            NO_QUERY, headers, default=cfg.default, maximum=cfg.max, offset=cfg.offset
        )
    except BudgetError:
        return None


def probe_handler(engine: Engine, endpoint: str, inflight: InFlight) -> Handler:
    """The handler for `/{endpoint}` and `/{endpoint}/{check}`.

    A status-only answer whose group has nothing to run is the same bytes until a result
    lands (engine.version) or a member's result goes stale (engine.horizon). Such answers
    come from a one-entry cache on a path that does as little as it can: it is the hot
    path of a probe listener (bench/throughput.py measures it against bare aiohttp).
    """
    group = ENDPOINTS[endpoint]
    cache: list[_Cached | None] = [None]
    probed = [  # observers that listen to probes (Observer.on_probe itself does nothing)
        o.on_probe
        for o in engine.observers
        if "on_probe" in vars(o) or type(o).on_probe is not Observer.on_probe
    ]
    finish = inflight.finish

    async def probe(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        headers = request.headers
        hit = cache[0]
        # ATTENTION: the hot path. Every condition here is a plain lookup; a generator or a
        # helper call costs more than the bare-aiohttp budget allows (bench/throughput.py).
        if (
            hit is not None
            and hit.version == engine.version
            and engine.clock() < hit.until
            and "?" not in request.raw_path  # no query: cheaper than parsing the URL's
            and not request.match_info
            and not inflight.closing
            and "Authorization" not in headers  # a token may show details: the slow path
            and render.HEALTH_JSON not in headers.get("Accept", "")
        ):
            wanted = headers.get(HEADER)  # as the kubelet sends it with our manifests
            if wanted is not None:
                budget = hit.budgets.get(wanted)  # the same text every time: parse it once
            elif (
                "grpc-timeout" in headers
                or "X-Prometheus-Scrape-Timeout-Seconds" in headers
                or "x-envoy-expected-rq-timeout-ms" in headers
            ):
                budget = None
            else:
                budget = hit.budget
            if budget is None:
                budget = _budget(headers, engine)  # None: unparseable, the slow path says 400
                if budget is not None and wanted is not None and len(hit.budgets) < 16:
                    hit.budgets[wanted] = budget
            if budget is not None:
                inflight.served += 1
                for on_probe in probed:
                    on_probe(endpoint, hit.status, time.perf_counter() - started, budget)
                return web.Response(body=hit.body, status=hit.status, headers=CACHED_HEADERS)
        return finish(await answer(request, started))

    async def answer(request: web.Request, started: float) -> web.Response:
        check = request.match_info.get("check")
        if check is not None and check not in engine.members(group):
            return error(404, f"no check {check!r} in group {group!r}")
        cfg = engine.settings.deadline
        try:
            budget = inbound_budget(
                request.query, request.headers,
                default=cfg.default, maximum=cfg.max, offset=cfg.offset,
            )  # fmt: skip
        except BudgetError as exc:
            return error(400, str(exc))
        plain = check is None and not request.query_string
        horizon = engine.horizon(group) if plain and _status_only(request.headers, engine) else None
        version = engine.version
        deadline = Deadline(engine.clock() + budget - cfg.margin, engine.clock)
        with inflight.track(request):
            response = await _evaluate(request, engine, endpoint, group, deadline, check)
        if horizon is not None and isinstance(response.body, bytes):
            cache[0] = _Cached(version, horizon, response.status, response.body, cfg.default)
        for on_probe in probed:
            on_probe(endpoint, response.status, time.perf_counter() - started, budget)
        return response

    return probe


async def _evaluate(
    request: web.Request,
    engine: Engine,
    endpoint: str,
    group: str,
    deadline: Deadline,
    check: str | None,
) -> web.Response:
    exclude = request.query.getall("exclude", [])
    fresh = FLAGS.get(request.query.get("fresh", "0").lower())  # a bare ?fresh is "": fresh
    if fresh is None:
        return error(400, f"?fresh: {request.query['fresh']!r:.40} is not a boolean (use 1 or 0)")
    snapshot = await engine.evaluate(group, deadline, fresh=fresh, exclude=exclude, only=check)
    if group == "health":
        groups = {g: engine.group_state(g, engine.states(engine.members(g))) for g in
                  ("readiness", "liveness", "startup")}  # fmt: skip
        snapshot = replace(snapshot, extra={"groups": {g: s.value for g, s in groups.items()}})
    return respond(request, engine, endpoint, snapshot)


def make_app(
    engine: Engine,
    extra_routes: list[web.RouteDef] | None = None,
    middlewares: Sequence[Middleware] = (),
    inflight: InFlight | None = None,
) -> web.Application:
    """The probe application; observers add `/metrics` (`extra_routes`) and trace context
    continuation (`middlewares`)."""
    app = web.Application(client_max_size=MAX_BODY, middlewares=list(middlewares))
    inflight = inflight or InFlight()
    app[ENGINE] = engine
    handlers = {name: probe_handler(engine, name, inflight) for name in ENDPOINTS}
    routes = [web.get(f"/{name}", handler) for name, handler in handlers.items()]
    routes += [web.get(f"/{name}/{{check}}", handlers[name]) for name in ("livez", "readyz")]
    for route in extra_routes or []:
        assert isinstance(route, web.RouteDef)
        routes.append(web.route(route.method, route.path, inflight.wrap(route.handler)))
    paths = [r.path for r in routes]

    async def not_allowed(request: web.Request) -> web.StreamResponse:
        return inflight.finish(error(405, f"{request.method} {request.path}: use GET"))

    async def not_found(request: web.Request) -> web.StreamResponse:
        return inflight.finish(error(404, f"{request.path}: no such path"))

    routes += [web.route("*", path, not_allowed) for path in paths]
    routes.append(web.route("*", "/{tail:.*}", not_found))
    app.add_routes(routes)
    return app
