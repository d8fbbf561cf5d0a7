"""healthd inside an ASGI app (reference §17): FastAPI, Starlette or plain ASGI.

    app = Probes(FastAPI(), health)                 # answers the probe paths before the app
    await serve(app, health, port=8000)             # uvicorn in process, with the drain order

`Probes` answers the §5 probe paths (and `/metrics`) with the daemon's own views: the
request is handed to the same aiohttp handlers (web/probes.py) as a request built from
the ASGI scope, so the answers, budgets and errors are the daemon's byte for byte. It
tracks the app's own requests for the drain (not the probes), adds `Connection: close`
to the app's answers once draining, and handles `lifespan`: `health` starts before the
app's own startup and stops after its shutdown (an app without lifespan support is fine).

`serve` runs uvicorn with its signal handling taken over: SIGTERM/SIGINT start the drain
(embed/drain.py), and uvicorn is told to exit only once the drain says so. Plain
`uvicorn app:app` cannot drain: it closes its listener at the first SIGTERM, before any
load balancer has seen readiness fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from healthd.errors import ConfigError
from healthd.groups import CHECK_PATHS, ENDPOINTS
from healthd.health import Health
from healthd.listeners import BACKLOG, split_listen
from healthd.web.base import Handler, InFlight
from healthd.web.probes import Probes as Views

from .drain import Signals, Summary, drain, report
from .traffic import Traffic

log = logging.getLogger("healthd")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
REAP = 1  # seconds uvicorn waits for connections once the drain has ended


class Probes:
    """An ASGI app: the probe paths answered here, everything else by `app`."""

    def __init__(
        self, app: ASGIApp, health: Health, prefix: str = "", metrics: bool = True
    ) -> None:
        if prefix and not prefix.startswith("/"):
            raise ConfigError(f"healthd.asgi.Probes: prefix {prefix!r:.60} must start with /")
        self.app, self.health, self.prefix = app, health, prefix.rstrip("/")
        self.traffic = Traffic()
        self.inflight = InFlight()
        views = Views(health.views(), self.inflight, health.metrics if metrics else None)
        self.routes: dict[str, Handler] = {}
        for name in ENDPOINTS:
            self.routes[f"{self.prefix}/{name}"] = views.handler(name)
        self.checks = {f"{self.prefix}/{name}/": views.handler(name) for name in CHECK_PATHS}
        if metrics:
            self.routes[f"{self.prefix}/metrics"] = health.metrics.route().handler

    def closing(self) -> None:
        """From now on every answer closes its connection."""
        self.traffic.closing = self.inflight.closing = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
        elif scope["type"] != "http":
            await self.app(scope, receive, send)  # websockets: the app's
        elif (found := self._probe(scope["path"])) is not None:
            await self._answer(scope, send, *found)
        else:
            await self._serve(scope, receive, send)

    def _probe(self, path: str) -> tuple[Handler, dict[str, str]] | None:
        handler = self.routes.get(path)
        if handler is not None:
            return handler, {}
        for start, handler in self.checks.items():
            check = path[len(start) :]
            if path.startswith(start) and check and "/" not in check:
                return handler, {"check": check}
        return None

    async def _answer(
        self, scope: Scope, send: Send, handler: Handler, match: dict[str, str]
    ) -> None:
        headers = CIMultiDict(
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", ())
        )
        query = scope.get("query_string", b"").decode("latin-1")
        target = scope.get("raw_path") or scope["path"].encode()
        target = target.decode("latin-1") + (f"?{query}" if query else "")
        method = scope.get("method", "GET")
        response: web.StreamResponse
        if method not in ("GET", "HEAD"):
            response = web.json_response(
                {"error": f"{method} {scope['path']}: use GET"}, status=405
            )
        else:
            request = make_mocked_request("GET", target, headers=headers, match_info=match)
            response = await handler(request)
        assert isinstance(response, web.Response)
        out = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()
        ]
        if response.content_type and b"content-type" not in dict(out):
            out.append((b"content-type", response.content_type.encode()))
        if self.traffic.closing:
            out.append((b"connection", b"close"))
        body = response.body if isinstance(response.body, bytes) else b""
        await send({"type": "http.response.start", "status": response.status, "headers": out})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app's request, tracked; `Connection: close` once draining; a request cut at
        the end of grace gets a 503 when its answer has not started."""
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if self.traffic.closing:
                    message = {**message, "headers": [*message.get("headers", ()), *CLOSE]}
            await send(message)

        with self.traffic.track(scope.get("method", "GET"), scope["path"]):
            try:
                await self.app(scope, receive, sending)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not self.traffic.was_cut(task) or started:
                    raise
                assert task is not None
                task.uncancel()
                await send({"type": "http.response.start", "status": 503, "headers": CUT_HEADERS})
                await send({"type": "http.response.body", "body": CUT_BODY})

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """health starts before the app's startup and stops after its shutdown; the app's
        own lifespan runs in a task of its own (an app that does not speak it is fine)."""
        inbox: asyncio.Queue[Message] = asyncio.Queue()
        outbox: asyncio.Queue[Message] = asyncio.Queue()

        async def app_lifespan() -> None:
            await self.app(scope, inbox.get, outbox.put)

        inner = asyncio.create_task(app_lifespan())

        async def app_says(message: Message) -> Message | None:
            """Pass `message` on; the app's answer (None: it does not speak lifespan)."""
            if inner.done():
                return None
            await inbox.put(message)
            answer = asyncio.ensure_future(outbox.get())
            await asyncio.wait({answer, inner}, return_when="FIRST_COMPLETED")
            if answer.done():
                return answer.result()
            answer.cancel()
            return None

        await receive()  # lifespan.startup
        self.health.start()
        answer = await app_says({"type": "lifespan.startup"})
        if answer is not None and answer["type"] == "lifespan.startup.failed":
            await self.health.stop()
            await send(answer)
            return
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        await app_says({"type": "lifespan.shutdown"})
        cfg = self.health.settings.shutdown
        await self.health.hooks.run(self.health.clock() + cfg.deadline)  # once: not again
        await self.health.stop()
        if not inner.done():
            inner.cancel()
        with contextlib.suppress(BaseException):
            await inner
        await send({"type": "lifespan.shutdown.complete"})


CLOSE = [(b"connection", b"close")]
CUT_BODY = b'{"error":"cut at the end of shutdown.grace"}'
CUT_HEADERS = [(b"content-type", b"application/json"), (b"cache-control", b"no-store"), *CLOSE]


def _bind(host: str, port: int) -> socket.socket:
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    host, port = split_listen(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family, backlog=BACKLOG)
    except OSError as exc:
        raise ConfigError(
            f"healthd.asgi.serve: cannot listen on {address}: {exc.strerror}"
        ) from None
    sock.setblocking(False)
    return sock


class UvicornServer:
    """The drain's `Server` for uvicorn: its listening servers and connections."""

    def __init__(self, probes: Probes, server: Any, task: asyncio.Task[None]) -> None:
        self.probes, self.server, self.task = probes, server, task

    @property
    def traffic(self) -> Traffic:
        return self.probes.traffic

    def closing(self) -> None:
        self.probes.closing()

    async def stop_accepting(self, until: float) -> None:
        for listening in self.server.servers:
            listening.close()
        for connection in list(self.server.server_state.connections):
            connection.shutdown()  # idle ones close now, busy ones after their answer

    async def close(self) -> None:
        self.server.should_exit = True  # its own shutdown: lifespan, so health stops
        await self.task


@contextlib.contextmanager
def _no_signals() -> Iterator[None]:
    yield  # SIGTERM/SIGINT are the drain's (embed/drain.Signals), not uvicorn's


async def serve(
    app: ASGIApp,
    health: Health,
    server: str = "uvicorn",
    host: str = "0.0.0.0",
    port: int = 8000,
    **options: Any,
) -> Summary:
    """Serve `app` (wrapped in `Probes` unless it is one) until SIGTERM/SIGINT, then stop in
    the drain order; the summary (already logged as the exit line). `options` go to
    `uvicorn.Config`. ConfigError: it cannot listen or start."""
    if server != "uvicorn":
        raise ConfigError(f"healthd.asgi.serve: server {server!r:.40} (only uvicorn for now)")
    import uvicorn

    probes = app if isinstance(app, Probes) else Probes(app, health)
    sock = _bind(host, port)
    config = uvicorn.Config(
        probes, lifespan="on", log_config=None, timeout_graceful_shutdown=REAP, **options
    )
    instance = uvicorn.Server(config)
    instance.capture_signals = _no_signals  # type: ignore[method-assign]
    signals = Signals()
    signals.install(asyncio.get_running_loop())
    task = asyncio.create_task(instance.serve(sockets=[sock]))
    try:
        while not instance.started and not task.done():  # noqa: ASYNC110 - a plain flag
            await asyncio.sleep(0.01)
        if task.done():
            await task  # SystemExit from uvicorn's failed startup goes on up
            raise ConfigError("healthd.asgi.serve: uvicorn stopped during its startup")
        bound = sock.getsockname()
        log.info("serving on %s:%d with healthd probes (uvicorn)", bound[0], bound[1])
        waiting = asyncio.ensure_future(signals.requested.wait())
        await asyncio.wait({waiting, task}, return_when="FIRST_COMPLETED")
        if task.done():
            waiting.cancel()
            raise ConfigError("healthd.asgi.serve: uvicorn exited on its own")
        summary = await drain(health, UvicornServer(probes, instance, task), signals)
        report(summary)
        return summary
    finally:
        signals.remove()


def run(
    app: ASGIApp, health: Health, server: str = "uvicorn", host: str = "0.0.0.0",
    port: int = 8000, **options: Any,
) -> None:  # fmt: skip
    """`serve` from a script: logging from `health.settings.logging` unless set up; a bad
    start is one line on stderr and exit code 2."""
    if not logging.getLogger().handlers:
        from healthd.observers.log import configure

        configure(health.settings.logging)
    try:
        summary = asyncio.run(serve(app, health, server, host, port, **options))
    except ConfigError as exc:
        print(f"healthd: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if summary.code:
        raise SystemExit(summary.code)
