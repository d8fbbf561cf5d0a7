"""healthd inside an aiohttp app (reference §17): the probes mounted in the app, and its
server stopped in the drain order (embed/drain.py).

    app = web.Application()
    health = Health(checks=[checks.Func("db", ping_db)])
    health.on_stop(pool.close, timeout="5s")
    healthd.aiohttp.setup(app, health)             # /livez /readyz /startupz /health /metrics
    healthd.aiohttp.run_app(app, health, port=8080)

`setup` reuses the daemon's probe views (web/probes.py) and adds: a middleware that
tracks the app's own requests (method, path, since; not the probes: a load balancer's
checks are not traffic), `Connection: close` on every answer once draining, and
`cleanup_ctx` starting `health` with the app and stopping it after the cleanup hooks.
With `web.run_app` instead of ours the probes and the hooks still work; the drain order
does not (aiohttp closes its listener at the first signal).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable

from aiohttp import hdrs, web
from aiohttp.log import access_logger
from aiohttp.web_urldispatcher import AbstractResource, AbstractRoute

from healthd.errors import ConfigError
from healthd.groups import CHECK_PATHS, ENDPOINTS
from healthd.health import Health
from healthd.listeners import BadRequests, Listener, close_idle
from healthd.web.base import Handler, InFlight
from healthd.web.probes import Probes

from .drain import Signals, Summary, drain, report, run
from .probethread import ProbeThread, listen_of
from .traffic import Traffic

log = logging.getLogger("healthd")
KEEPALIVE = 75.0  # web.run_app's own default (a bare AppRunner keeps idle connections ~1 h)
REAP_TIMEOUT = 1.0  # aiohttp's own shutdown wait, once every request has ended or been cut


class Embedded:
    """What `setup` put into one app: the probes, its traffic, the health it serves."""

    def __init__(
        self, app: web.Application, health: Health, prefix: str, metrics: bool, listen: str | None
    ) -> None:
        self.health, self.prefix = health, prefix.rstrip("/")
        address = listen_of(health, listen)  # the probes' own thread and port, if any
        self.thread = ProbeThread(health, address) if address is not None else None
        self.inflight = InFlight()  # the probes' own requests that wait on a check
        self.traffic = Traffic()  # the app's requests
        self.probes = Probes(health.views(), self.inflight, health.metrics if metrics else None)
        self.resources: set[AbstractResource | None] = set()  # the probes' own (GET and HEAD)
        self.paths = [f"{self.prefix}/{name}" for name in ENDPOINTS]
        self.paths += [f"{self.prefix}/{name}/{{check}}" for name in CHECK_PATHS]
        if metrics:
            self.paths.append(f"{self.prefix}/metrics")
        self.taken = taken(app.router.routes(), self.paths)

    def route_defs(self, metrics: bool) -> list[web.RouteDef]:
        handlers = {name: self.probes.handler(name) for name in ENDPOINTS}
        p = self.prefix
        defs = [web.get(f"{p}/{name}", handler) for name, handler in handlers.items()]
        defs += [web.get(f"{p}/{name}/{{check}}", handlers[name]) for name in CHECK_PATHS]
        if metrics:
            scrape = self.health.metrics.route().handler
            defs.append(web.get(f"{p}/metrics", self.inflight.wrap(scrape)))
        return defs

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Track the app's requests; a request cut at the end of grace gets a 503 when its
        answer has not started (else its connection closes, as any cancelled handler's)."""
        if request.match_info.route.resource in self.resources:
            return await handler(request)
        traffic = self.traffic
        with traffic.track(request.method, request.path):
            try:
                return await handler(request)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not traffic.was_cut(task) or request.get(STARTED, False):
                    raise
                assert task is not None
                task.uncancel()
                return web.json_response(
                    {"error": "cut at the end of shutdown.grace"}, status=503,
                    headers={"Cache-Control": "no-store"},
                )  # fmt: skip

    async def on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        request[STARTED] = True
        if self.traffic.closing:
            response.force_close()
            response.headers[hdrs.CONNECTION] = "close"

    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        """cleanup_ctx: refuse a route at a probe path, start `health`; at the app's
        cleanup, the hooks run_app has not run, then stop `health`."""
        clash = self.taken or taken(
            (r for r in app.router.routes() if r.resource not in self.resources), self.paths
        )
        if clash:
            raise ConfigError(
                f"healthd.aiohttp.setup: the app already has a route at {clash} "
                "(pass prefix= to mount the probes elsewhere)"
            )
        self.health.start()
        if self.thread is not None:
            await self.thread.start()
        yield
        cfg = self.health.settings.shutdown
        await self.health.hooks.run(self.health.clock() + cfg.deadline)
        await self.health.stop()
        if self.thread is not None:
            await self.thread.stop()


STARTED = web.RequestKey("healthd.started", bool)  # its answer's headers have gone out
EMBEDDED = web.AppKey("healthd.embedded", Embedded)


def taken(routes: Iterable[AbstractRoute], paths: list[str]) -> str:
    """The first probe path a route of the app already takes ("" if none)."""
    wanted = set(paths)
    for route in routes:
        resource = route.resource
        if resource is not None and resource.canonical in wanted:
            return resource.canonical
    return ""


def setup(
    app: web.Application,
    health: Health,
    prefix: str = "",
    metrics: bool = True,
    listen: str | None = None,
) -> None:
    """Mount the §5 probe routes (and `/metrics` unless `metrics=False`) under `prefix`,
    track the app's requests for the drain, and start/stop `health` with the app. A route
    the app already has at a probe path fails the app's start, naming the path.

    `listen` (default: `server.listen` when the settings set it) also serves `/livez`,
    `/readyz` and `/startupz` on a port, thread and event loop of their own, so a saturated
    app never makes its load balancer's checks wait (embed/probethread.py)."""
    if EMBEDDED in app:
        raise ConfigError("healthd.aiohttp.setup: called twice on the same app")
    if prefix and not prefix.startswith("/"):
        raise ConfigError(f"healthd.aiohttp.setup: prefix {prefix!r:.60} must start with /")
    embedded = app[EMBEDDED] = Embedded(app, health, prefix, metrics, listen)
    if not embedded.taken:
        embedded.resources = {r.resource for r in app.add_routes(embedded.route_defs(metrics))}
    app.middlewares.insert(0, embedded.middleware)  # outermost: it sees the whole request
    app.on_response_prepare.append(embedded.on_prepare)
    app.cleanup_ctx.append(embedded.lifespan)


class AiohttpServer:
    """The drain's `Server` for an aiohttp app: its runner and listening sockets."""

    def __init__(
        self,
        app: web.Application,
        keepalive_timeout: float,
        access_log: logging.Logger | None = access_logger,
    ) -> None:
        if EMBEDDED not in app:
            raise ConfigError(
                "healthd.aiohttp.run_app: call healthd.aiohttp.setup(app, health) first"
            )
        self.embedded = app[EMBEDDED]
        self.runner = web.AppRunner(
            app, handle_signals=False, keepalive_timeout=keepalive_timeout,
            shutdown_timeout=REAP_TIMEOUT, logger=BadRequests(logging.getLogger("healthd.http")),
            access_log=access_log,
        )  # fmt: skip
        self.listeners: list[Listener] = []

    @property
    def traffic(self) -> Traffic:
        return self.embedded.traffic

    async def start(self, host: str, port: int) -> None:
        await self.runner.setup()  # the app's startup: ConfigError for a taken probe path
        assert self.runner.server is not None
        embedded = self.embedded  # the hot path, before any connection:
        embedded.probes.front(self.runner.server, embedded.prefix)
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        listener = Listener(self.runner, address, "healthd.aiohttp.run_app")
        await listener.start()
        self.listeners.append(listener)

    def bound(self) -> str:
        """Where it listens (`127.0.0.1:41503`: the port chosen when asked for port 0)."""
        socks = [x.sock for x in self.listeners if x.sock is not None]
        host, port = socks[0].getsockname()[:2] if socks else ("-", 0)
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def closing(self) -> None:
        self.traffic.closing = self.embedded.inflight.closing = True
        if self.embedded.thread is not None:
            self.embedded.thread.closing = True

    async def stop_accepting(self, until: float) -> None:
        for listener in self.listeners:
            await listener.close()  # what the kernel queued is taken, not reset
        self.listeners = []
        if self.runner.server is not None:
            await close_idle([self.runner.server], until)

    async def close(self) -> None:
        await self.runner.cleanup()  # cleanup_ctx: health stops (the hooks ran already)


async def serve(
    app: web.Application,
    health: Health,
    host: str = "0.0.0.0",
    port: int = 8080,
    *,
    keepalive_timeout: float = KEEPALIVE,
    access_log: logging.Logger | None = access_logger,
) -> Summary:
    """Serve `app` until SIGTERM/SIGINT, then stop it in the drain order; the summary
    (already logged as the exit line). ConfigError: the app cannot start or listen."""
    server = AiohttpServer(app, keepalive_timeout, access_log)
    signals = Signals()
    signals.install(asyncio.get_running_loop())
    try:
        try:
            await server.start(host, port)
        except BaseException:
            await server.runner.cleanup()
            raise
        log.info("serving on %s with healthd probes", server.bound())
        await signals.requested.wait()
        summary = await drain(health, server, signals)
        report(summary)
        return summary
    finally:
        signals.remove()


def run_app(
    app: web.Application,
    health: Health,
    host: str = "0.0.0.0",
    port: int = 8080,
    *,
    keepalive_timeout: float = KEEPALIVE,
    access_log: logging.Logger | None = access_logger,
) -> None:
    """`web.run_app` with the drain order (embed/drain.py). Logging is set up from
    `health.settings.logging` unless the root logger has handlers already. A bad start (a
    taken probe path, a port in use) is one line on stderr and exit code 2. `access_log`
    as aiohttp's (None: off)."""
    run(
        health,
        serve(app, health, host, port, keepalive_timeout=keepalive_timeout, access_log=access_log),
    )
