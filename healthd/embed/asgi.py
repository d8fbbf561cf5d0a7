"""healthd inside an ASGI app (reference §17): FastAPI, Starlette or any ASGI callable.

    api = FastAPI()
    health = Health(checks=[checks.Func("db", ping_db)])
    app = healthd.asgi.Probes(api, health)        # /livez /readyz /startupz /health /metrics
    healthd.asgi.serve(app, health, port=8000)   # uvicorn with the drain order (asgiserve.py)

`Probes` answers the probe paths before the app, with the daemon's own views
(web/probes.py: an ASGI request is read through `Asked`, the view's answer is sent as
ASGI messages), tracks the app's HTTP requests in a `Traffic` (method, path, since;
probes are not traffic), adds `Connection: close` to the app's answers once draining,
and speaks `lifespan`: `health` starts before the app's own startup and stops after its
shutdown; an app without lifespan support is fine. A Starlette/FastAPI route at a probe
path fails the start with one line; other apps' paths cannot be seen, so there the
probes answer first (README).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from time import perf_counter
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy
from prometheus_client import make_asgi_app

from healthd.errors import ConfigError
from healthd.groups import CHECK_PATHS, ENDPOINTS
from healthd.health import Health
from healthd.web.base import InFlight, error
from healthd.web.probes import Probes as Views

from .traffic import Traffic

log = logging.getLogger("healthd")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
CUT = b'{"error": "cut at the end of shutdown.grace"}'


class Asked:
    """An ASGI HTTP request as the probe views read it (web.base.Asked)."""

    __slots__ = ("headers", "match_info", "method", "path_qs", "query")

    def __init__(self, scope: Scope, check: str | None) -> None:
        raw: bytes = scope.get("query_string", b"")
        text = raw.decode("latin-1")
        self.method: str = scope["method"]
        self.path_qs = f"{scope['path']}?{text}" if text else str(scope["path"])
        pairs = parse_qsl(text, keep_blank_values=True)
        self.query = MultiDictProxy(MultiDict(pairs))
        self.headers = CIMultiDictProxy(
            CIMultiDict((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"])
        )
        self.match_info = {"check": check} if check is not None else {}


async def reply(send: Send, response: web.StreamResponse, head: bool, closing: bool) -> None:
    """Send an aiohttp `web.Response` (the views' answer) as ASGI messages."""
    assert isinstance(response, web.Response)
    body = response.body
    assert isinstance(body, bytes)
    headers = [
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()
    ]
    headers.append((b"content-length", str(len(body)).encode()))
    if closing and "Connection" not in response.headers:  # InFlight.finish may have set it
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


def routes_of(app: object) -> list[str]:
    """The paths of a Starlette/FastAPI app's routes (through middleware that keeps the
    app as `.app`); [] when the app does not list them."""
    for _ in range(20):
        routes = getattr(app, "routes", None)
        if isinstance(routes, list):
            return [path for r in routes if isinstance(path := getattr(r, "path", None), str)]
        app = getattr(app, "app", None)
        if app is None:
            break
    return []


class AppLifespan:
    """The wrapped app's own lifespan, driven message by message; an app that returns or
    raises before answering the startup does not support lifespan (as uvicorn's "auto")."""

    def __init__(self, app: ASGIApp, scope: Scope) -> None:
        self.app, self.scope = app, scope
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.outbox: asyncio.Queue[Message] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.supported = True

    async def _run(self) -> None:
        await self.app(self.scope, self.inbox.get, self.outbox.put)

    async def event(self, kind: str) -> str | None:
        """Pass `lifespan.{kind}` on; the failure message if the app failed it, else None."""
        if not self.supported:
            return None
        if self.task is None:
            self.task = asyncio.create_task(self._run(), name="app-lifespan")
        await self.inbox.put({"type": f"lifespan.{kind}"})
        answer = asyncio.ensure_future(self.outbox.get())
        await asyncio.wait({answer, self.task}, return_when=asyncio.FIRST_COMPLETED)
        if answer.done():
            message = answer.result()
            if str(message["type"]).endswith(".failed"):
                return str(message.get("message") or f"the app's {kind} failed")
            return None
        answer.cancel()
        self.supported = False
        failed = self.task.exception() if not self.task.cancelled() else None
        if kind == "startup":
            log.debug("the app does not support lifespan (%r): going on without", failed)
        elif failed is not None:
            log.error("the app's lifespan shutdown raised %s: %s", type(failed).__name__, failed)
        return None


class Probes:
    """An ASGI app: the probes in front of `app`, its requests tracked, `lifespan` shared."""

    def __init__(
        self, app: ASGIApp, health: Health, prefix: str = "", metrics: bool = True
    ) -> None:
        self.app, self.health, self.prefix = app, health, prefix.rstrip("/")
        self.inflight = InFlight()  # the probes' own requests that wait on a check
        self.traffic = Traffic()  # the app's requests
        self.views = Views(health.views(), self.inflight, health.metrics if metrics else None)
        p = self.prefix
        self.exact: dict[str, tuple[str, str]] = {f"{p}/{n}": (n, g) for n, g in ENDPOINTS.items()}
        self.per_check = {f"{p}/{n}/": (n, ENDPOINTS[n]) for n in CHECK_PATHS}
        self.metrics_path = f"{p}/metrics" if metrics else None
        self.scrape = make_asgi_app(health.metrics.registry) if metrics else None
        self.paths = [*self.exact, *(f"{x}{{check}}" for x in self.per_check)]
        if self.metrics_path:
            self.paths.append(self.metrics_path)
        self.held: asyncio.Event | None = None  # serve(): lifespan shutdown waits for the drain
        self.started = asyncio.Event()  # lifespan startup answered (ok or not)
        self.failed = ""  # why the startup failed

    def check_routes(self) -> None:
        """ConfigError naming the first probe path a route of the app already takes."""
        taken = set(self.paths)
        for path in routes_of(self.app):
            if path in taken:
                raise ConfigError(
                    f"healthd.asgi.Probes: the app already has a route at {path} "
                    "(pass prefix= to mount the probes elsewhere)"
                )

    def hold(self) -> asyncio.Event:
        """Make the lifespan shutdown wait until the returned event is set (serve(): the
        drain runs the hooks first, then lets the app and `health` stop)."""
        self.held = asyncio.Event()
        return self.held

    def closing(self) -> None:
        self.traffic.closing = self.inflight.closing = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.lifespan(scope, receive, send)
            return
        if kind != "http":
            await self.app(scope, receive, send)  # websockets: the app's, not tracked
            return
        path: str = scope["path"]
        target = self.exact.get(path)
        check = None
        if target is None and path.count("/") == self.prefix.count("/") + 2:
            head, _, check = path.rpartition("/")
            target = self.per_check.get(head + "/") if check else None
        if target is not None:
            await self.probe(scope, send, target, check)
        elif path == self.metrics_path and self.scrape is not None:
            await self.scrape(scope, receive, self.closing_send(send))
        else:
            await self.request(scope, receive, send)

    async def probe(
        self, scope: Scope, send: Send, target: tuple[str, str], check: str | None
    ) -> None:
        method = scope["method"]
        if method in ("GET", "HEAD"):
            endpoint, group = target
            answer = await self.views.answer(Asked(scope, check), endpoint, group, perf_counter())
            response = self.inflight.finish(answer)
        else:
            response = error(405, f"{method} {scope['path']}: use GET")
        await reply(send, response, method == "HEAD", self.traffic.closing)

    def closing_send(self, send: Send) -> Send:
        """`send` that adds `Connection: close` to an answer's start once draining."""
        traffic = self.traffic

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and traffic.closing:
                kept = [h for h in message.get("headers", []) if h[0].lower() != b"connection"]
                message = {**message, "headers": [*kept, (b"connection", b"close")]}
            await send(message)

        return sending

    async def request(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app's request, tracked; cut at the end of grace it gets a 503 if its answer
        has not started (else the server closes its connection: the answer is incomplete)."""
        started = False
        closing_send = self.closing_send(send)

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await closing_send(message)

        traffic = self.traffic
        with traffic.track(scope["method"], scope["path"]):
            try:
                await self.app(scope, receive, sending)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not traffic.was_cut(task):
                    raise
                assert task is not None
                task.uncancel()
                if started:
                    return
                headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
                headers += [(b"content-length", str(len(CUT)).encode()), (b"connection", b"close")]
                await send({"type": "http.response.start", "status": 503, "headers": headers})
                await send({"type": "http.response.body", "body": CUT})

    async def lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Start `health` (after refusing a taken probe path), then the app; at shutdown,
        after the drain (`hold`), the hooks not yet run, the app's shutdown, `health` stops."""
        inner = AppLifespan(self.app, scope)
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.check_routes()
                    self.health.start()
                    failed = await inner.event("startup")
                except ConfigError as exc:
                    failed = str(exc)
                if failed:
                    self.failed = failed
                    self.started.set()
                    await self.health.stop()
                    await send({"type": "lifespan.startup.failed", "message": failed})
                    return
                self.started.set()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.held is not None:
                    await self.held.wait()
                cfg = self.health.settings.shutdown
                await self.health.hooks.run(self.health.clock() + cfg.deadline)
                failed = await inner.event("shutdown")
                await self.health.stop()
                if failed:
                    await send({"type": "lifespan.shutdown.failed", "message": failed})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                return
