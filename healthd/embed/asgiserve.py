"""An ASGI server run in process with the drain order (reference §17; embed/drain.py).

    healthd.asgi.serve(app, health, server="uvicorn", port=8000)    # or "hypercorn"

Both servers close their listener at the first signal and have no drain delay, so
`serve` owns the signals and each server is one `drain.Server`:

    uvicorn    its signal capture is switched off (no handler, no re-raised signal at the
               end); `stop_accepting` closes its listener, taking what the kernel queued
               (as listeners.Listener does), then its idle connections; `close` sets
               `should_exit` and its own shutdown finds nothing left but the lifespan.
    hypercorn  `shutdown_trigger` fires at `stop_accepting` (listener closed, idle
               keep-alive connections closed, busy ones close after their answer); its
               `graceful_timeout` is set past grace, so only the drain cuts at grace.

Either way the lifespan shutdown (the app's own, then `health` stops) waits until the
drain has run the hooks (`Probes.hold`). `graceful_timeout`/`timeout_graceful_shutdown`
in the options are refused: `shutdown.grace` is the one grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Generator
from typing import Any

from healthd.errors import ConfigError
from healthd.health import Health
from healthd.listeners import FIRST_REQUEST, SETTLE_ROUNDS, bind, unread

from .asgi import ASGIApp, Probes
from .drain import REAP, Signals, Summary, drain, report, run
from .traffic import Traffic

log = logging.getLogger("healthd")
SERVERS = ("uvicorn", "hypercorn")
OWN_GRACE = ("graceful_timeout", "timeout_graceful_shutdown")


class Backend:
    """What both servers share: the wrapped app, its listening socket, the server's task."""

    name = ""

    def __init__(self, probes: Probes, host: str, port: int) -> None:
        self.probes, self.host, self.port = probes, host, port
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.sock = bind(address, "healthd.asgi.serve")
        self.released = probes.hold()
        self.task: asyncio.Task[None] | None = None

    @property
    def traffic(self) -> Traffic:
        return self.probes.traffic

    def closing(self) -> None:
        self.probes.closing()

    async def run(self) -> None:
        raise NotImplementedError

    async def start(self) -> asyncio.Task[None]:
        """Run the server; return once the app has started (ConfigError if it did not)."""
        self.task = asyncio.create_task(self.run(), name=self.name)
        started = asyncio.ensure_future(self.probes.started.wait())
        await asyncio.wait({started, self.task}, return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if self.probes.failed or self.task.done():
            why = self.probes.failed or "the server stopped"
            self.released.set()
            with contextlib.suppress(BaseException):
                await self.task
            raise ConfigError(f"healthd.asgi.serve: the app did not start under {self.name}: {why}")
        return self.task

    async def close(self) -> None:
        self.released.set()  # the lifespan shutdown: the app's, then health stops
        if self.task is not None:
            await self.task


class Uvicorn(Backend):
    name = "uvicorn"

    def __init__(self, probes: Probes, host: str, port: int, options: dict[str, Any]) -> None:
        import uvicorn

        super().__init__(probes, host, port)

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Generator[None, None, None]:
                yield  # the signals are the drain's (drain.Signals)

        options = {**options, "lifespan": "on", "timeout_graceful_shutdown": REAP}
        self.config = uvicorn.Config(probes, host=host, port=port, **options)
        self.server = Server(self.config)
        self.exit_code: object = None

    async def run(self) -> None:
        try:
            await self.server.serve(sockets=[self.sock])
        except SystemExit as exc:  # uvicorn's startup failure
            self.exit_code = exc.code

    async def stop_accepting(self, until: float) -> None:
        keep = self.sock.dup()
        for server in self.server.servers:
            server.close()  # asyncio stops accepting and closes its descriptor only
        queued: list[socket.socket] = []
        try:
            while True:  # no await in here: the burst and the close are one step
                try:
                    queued.append(keep.accept()[0])
                except OSError:
                    break
        finally:
            keep.close()
        loop = asyncio.get_running_loop()
        config, state = self.config, self.server.server_state
        for conn in queued:
            conn.setblocking(False)
            await loop.connect_accepted_socket(
                lambda: config.http_protocol_class(  # type: ignore[call-arg]
                    config=config, server_state=state, app_state=self.server.lifespan.state
                ),
                conn,
            )
        await self.close_idle(until)

    async def close_idle(self, until: float) -> None:
        """Idle connections closed, busy ones close after their answer; a connection with
        its request still in the socket buffer is read first, and one that has not sent its
        first request gets FIRST_REQUEST to send it (listeners.close_idle, for uvicorn)."""
        seen: set[Any] = set()
        quiet = 0
        fresh_until = min(until, time.monotonic() + FIRST_REQUEST)
        while time.monotonic() < until:
            busy = waiting = False
            for conn in list(self.server.server_state.connections):
                if conn in seen:
                    continue
                cycle = getattr(conn, "cycle", None)
                if unread(getattr(conn, "transport", None)) > 0:
                    busy = True  # read on a coming iteration
                    continue
                if cycle is None and time.monotonic() < fresh_until:
                    waiting = True
                    continue
                seen.add(conn)
                busy = True
                conn.shutdown()  # idle: closed now; busy: closes after its answer
            quiet = 0 if busy else quiet + 1
            if quiet >= SETTLE_ROUNDS and not waiting:
                return
            await asyncio.sleep(0.001 if waiting and quiet >= SETTLE_ROUNDS else 0)

    async def close(self) -> None:
        self.server.should_exit = True
        await super().close()


class Hypercorn(Backend):
    name = "hypercorn"

    def __init__(self, probes: Probes, host: str, port: int, options: dict[str, Any]) -> None:
        from hypercorn.config import Config

        self.config = Config()
        for key, value in options.items():
            if not hasattr(self.config, key):
                raise ConfigError(f"healthd.asgi.serve: hypercorn has no option {key!r}")
            setattr(self.config, key, value)
        super().__init__(probes, host, port)
        # hypercorn waits this long for connections after the trigger, then cancels them:
        # past grace (counted from the same moment) and the reaping, so only the drain cuts.
        self.config.graceful_timeout = probes.health.settings.shutdown.grace + 2 * REAP
        self.trigger = asyncio.Event()

    async def run(self) -> None:
        from hypercorn.asyncio.run import worker_serve
        from hypercorn.config import Sockets
        from hypercorn.utils import wrap_app

        sockets = Sockets([], [self.sock], [])  # ours: bound before the start, as uvicorn's
        probes: Any = self.probes  # an ASGI callable; hypercorn's types are its TypedDicts
        app = wrap_app(probes, self.config.wsgi_max_body_size, "asgi")
        await worker_serve(app, self.config, sockets=sockets, shutdown_trigger=self.trigger.wait)

    async def stop_accepting(self, until: float) -> None:
        self.trigger.set()  # hypercorn closes the listener and its idle connections
        # hypercorn says nothing when its listener is closed (a few loop turns from here):
        # our socket's descriptor going is the sign.
        while self.sock.fileno() >= 0 and time.monotonic() < until:  # noqa: ASYNC110
            await asyncio.sleep(0.001)


async def serve_async(
    app: ASGIApp | Probes,
    health: Health,
    server: str = "uvicorn",
    host: str = "0.0.0.0",
    port: int = 8000,
    **options: Any,
) -> Summary:
    """Serve `app` (wrapped in `Probes` unless it is one) until SIGTERM/SIGINT, then stop
    it in the drain order; the summary (logged as the exit line). ConfigError: a bad
    option, a taken probe path, a port in use, an app that does not start."""
    if server not in SERVERS:
        raise ConfigError(f"healthd.asgi.serve: server={server!r}: use 'uvicorn' or 'hypercorn'")
    given = [key for key in OWN_GRACE if key in options]
    if given:
        raise ConfigError(f"healthd.asgi.serve: {given[0]}: use shutdown.grace instead")
    probes = app if isinstance(app, Probes) else Probes(app, health)
    probes.check_routes()
    signals = Signals()
    signals.install(asyncio.get_running_loop())
    try:
        kind = Uvicorn if server == "uvicorn" else Hypercorn
        backend = kind(probes, host, port, options)
        task = await backend.start()
        log.info("serving on %s:%d with healthd probes (%s)", host, port, server)
        requested = asyncio.ensure_future(signals.requested.wait())
        await asyncio.wait({requested, task}, return_when=asyncio.FIRST_COMPLETED)
        requested.cancel()
        summary = await drain(health, backend, signals)
        report(summary)
        return summary
    finally:
        signals.remove()


def serve(
    app: ASGIApp | Probes,
    health: Health,
    server: str = "uvicorn",
    host: str = "0.0.0.0",
    port: int = 8000,
    **options: Any,
) -> None:
    """Run `server` ("uvicorn" or "hypercorn", with its `options`) in this process until
    SIGTERM/SIGINT, then drain (embed/drain.py). Logging is set up from
    `health.settings.logging` unless the root logger has handlers already. A bad start is
    one line on stderr and exit code 2."""
    run(health, serve_async(app, health, server, host, port, **options))
