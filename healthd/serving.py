"""What the daemon serves on: the probe listener, the admin listener, the gRPC health
server, and how they close (reference §6).

`Servers.start()` sets up the probe app's runner with its hot path in front
(`probes.front`), listens, and starts the admin API (when a token is set) and gRPC health
(when `server.grpc_listen` is) and the HAProxy agent-check (when `server.agent_listen` is:
agent.py). `Servers.close()` ends every stream, closes the listeners
losing nothing queued (listeners.py), gives requests in flight `shutdown.grace`, then
cancels and logs the rest.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aiohttp import web

from healthd.agent import Agent
from healthd.config import Settings
from healthd.durations import human_duration
from healthd.health import Views
from healthd.listeners import BadRequests, Listener, close_idle
from healthd.observers.metrics import Metrics
from healthd.watchers import Watchers
from healthd.web import base, probes

if TYPE_CHECKING:
    from healthd.grpchealth import GrpcHealth

log = logging.getLogger("healthd")
# After grace every handler has finished or been cancelled: aiohttp's own shutdown wait
# only has to reap connections, so it gets a short bound (its timeouts round up above 5 s).
REAP_TIMEOUT = 1.0
ADMIN_KEEPALIVE = 15.0


class Servers:
    """The daemon's runners and listeners, for the core's `views` (their settings in force)."""

    def __init__(
        self,
        views: Views,
        apps: tuple[web.Application, web.Application],  # (probes, admin)
        inflight: base.InFlight,
        watchers: Watchers,
        metrics: Metrics | None,
        *,
        tracing: bool = False,
    ) -> None:
        self.views, self.tracing = views, tracing
        self.settings: Callable[[], Settings] = views.settings
        self.app, self.admin_app = apps
        self.inflight, self.watchers, self.metrics = inflight, watchers, metrics
        # Malformed requests: counted, one short line per 10 s, no traceback (listeners.py).
        self.bad_requests = BadRequests(logging.getLogger("healthd.http"))
        self.cancelled = 0  # requests cancelled at the end of grace
        self.grpc: GrpcHealth | None = None  # server.grpc_listen (grpchealth.py)
        self.agent = Agent(views.store, self.settings)  # listens when server.agent_listen is set
        if metrics is not None:
            metrics.count_by(
                "healthd_agent_connections", "HAProxy agent-check connections, by reply word",
                ["reply"], self.agent.counts,
            )  # fmt: skip
        self._runner: web.AppRunner | None = None
        self._admin_runner: web.AppRunner | None = None
        self._admin_site: Listener | None = None
        self._listeners: list[Listener] = []

    @property
    def admin_on(self) -> bool:
        return self._admin_site is not None

    async def start(self) -> None:
        """Listen: probes, then admin (token set) and gRPC health (grpc_listen set)."""
        server = self.settings().server
        # keepalive_timeout: longer than the idle timeout of common clients (aiohttp 15 s,
        # kubelet none), so a client, not healthd, closes an idle connection: no race.
        runner = self._runner = web.AppRunner(
            self.app, handle_signals=False, keepalive_timeout=server.keepalive_timeout,
            shutdown_timeout=REAP_TIMEOUT, access_log=None, logger=self.bad_requests,
        )  # fmt: skip
        await runner.setup()
        assert runner.server is not None  # set up
        probes.front(self.app, runner.server)  # the hot path, before any connection
        try:
            await self._listen(runner, server.listen, "server.listen")
            if server.token.get_secret_value():
                await self.start_admin()
            else:
                log.info("admin API off: server.token is empty")
            if server.grpc_listen:
                await self._start_grpc(server.grpc_listen)
            if server.agent_listen:
                await self.agent.start(server.agent_listen)
        except BaseException:
            await self.cleanup()
            raise

    async def start_admin(self) -> None:
        """Serve the admin API on `server.admin_listen` (ConfigError: cannot listen)."""
        if self._admin_runner is None:
            self._admin_runner = web.AppRunner(
                self.admin_app, handle_signals=False, keepalive_timeout=ADMIN_KEEPALIVE,
                shutdown_timeout=REAP_TIMEOUT, access_log=None, logger=self.bad_requests,
            )  # fmt: skip
            await self._admin_runner.setup()
        address = self.settings().server.admin_listen
        self._admin_site = await self._listen(self._admin_runner, address, "server.admin_listen")
        log.info("admin API on %s", address)

    async def stop_admin(self) -> None:
        if self._admin_site is not None:
            await self._admin_site.close()
            self._listeners.remove(self._admin_site)
            self._admin_site = None

    async def close(self) -> None:
        """Close listeners losing nothing queued, give requests in flight `grace`, cancel
        (and log) the rest; streams end first, never holding grace."""
        grace = self.settings().shutdown.grace
        until = time.monotonic() + grace
        runners = [r for r in (self._runner, self._admin_runner) if r is not None]
        queued = 0
        self.watchers.close()  # streams end with the listeners
        grpc_closed = self.grpc.close(grace) if self.grpc is not None else None
        await self.agent.close()
        for listener in self._listeners:
            queued += await listener.close()
        closed_at = max((x.closed_at for x in self._listeners), default=time.time())
        self._listeners = []
        self._admin_site = None
        await close_idle([r.server for r in runners if r.server is not None], until)
        inflight = self.inflight
        log.info(
            "listeners closed at %s; %d queued connections taken, %d requests in flight "
            "get up to %s",
            _iso(closed_at), queued, len(inflight.requests), human_duration(grace),
        )  # fmt: skip
        if not inflight.requests:
            inflight.idle.set()
        try:
            async with asyncio.timeout(max(0.0, until - time.monotonic())):
                await inflight.idle.wait()
        except TimeoutError:
            now = time.monotonic()
            late = list(inflight.requests.items())
            for task, (request, since) in late:
                log.warning(
                    "grace over: cancelling %s after %s",
                    describe(request), human_duration(now - since),
                )  # fmt: skip
                task.cancel()
            self.cancelled = len(late)
            if late:
                await asyncio.wait([t for t, _ in late], timeout=REAP_TIMEOUT)
        if grpc_closed is not None:  # its calls in flight had the same grace
            await grpc_closed
        await self.cleanup()

    async def cleanup(self) -> None:
        """Release the runners (and a gRPC server that close() did not stop: a failed start)."""
        if self.grpc is not None:
            await self.grpc.close(0.0)  # the same task when close() stopped it already
        await self.agent.close()
        for runner in (self._runner, self._admin_runner):
            if runner is not None:
                await runner.cleanup()
        self._runner = self._admin_runner = self._admin_site = None

    async def _listen(self, runner: web.AppRunner, address: str, key: str) -> Listener:
        listener = Listener(runner, address, key)
        await listener.start()
        self._listeners.append(listener)
        return listener

    async def _start_grpc(self, address: str) -> None:
        from healthd import grpchealth  # the `grpc` extra: imported only when it is used

        self.grpc = await grpchealth.start(
            self.views, self.watchers, self.metrics, address, tracing=self.tracing
        )
        log.info("gRPC health on %s", self.grpc.bound)


def _iso(wall: float) -> str:
    """UTC, ISO 8601 with microseconds: `2026-12-02T03:23:51.123456Z`."""
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def describe(request: base.Asked) -> str:
    return f"{request.method} {request.path_qs[:200]}"
