"""start → serve → SIGTERM → draining → drain_delay → stop listeners → grace → flush → exit 0.

aiohttp's `run_app` closes the listening sockets first on a signal; we own the signals
instead (`AppRunner(handle_signals=False)`), so probes keep getting answers — 503 on
readiness, 200 on liveness — for `shutdown.drain_delay` before the listeners close.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from pathlib import Path

from aiohttp import web

from healthd import api
from healthd.checks.loop import MONITOR
from healthd.config import Settings
from healthd.engine import Engine
from healthd.observers import Telemetry, setup

log = logging.getLogger("healthd")


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


class Daemon:
    """One running healthd: the engine, the listeners and the signals that steer them."""

    def __init__(
        self,
        settings: Settings,
        config_path: Path | None = None,
        *,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.settings = settings
        self.config_path = config_path
        self.telemetry = telemetry or setup(settings)
        self.engine = Engine(
            settings, observers=self.telemetry.observers, tracer=self.telemetry.tracer
        )
        self.telemetry.bind(self.engine)
        self.app = api.make_app(self.engine, self.telemetry.routes)
        self._stop = asyncio.Event()
        self._signals = 0
        self.exit_code = 0

    def request_stop(self, signame: str = "stop") -> None:
        """First call: start draining. Second: give up at once with exit code 1."""
        self._signals += 1
        if self._signals > 1:
            log.warning("second %s: exiting at once", signame)
            self.exit_code = 1
            raise SystemExit(1)
        log.info("%s: draining (readiness now fails; listeners stay open)", signame)
        self.engine.set_draining(True)
        self._stop.set()

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        server = self.settings.server
        runner = web.AppRunner(
            self.app,
            handle_signals=False,
            keepalive_timeout=server.keepalive_timeout,
            shutdown_timeout=self.settings.shutdown.grace,
            access_log=None,
        )
        await runner.setup()
        host, port = split_listen(server.listen)
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        MONITOR.ensure_running()
        self.engine.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        log.info("healthd listening on %s with %d checks", server.listen, len(self.settings.checks))
        started = time.monotonic()
        try:
            await self._stop.wait()
            await asyncio.sleep(self.settings.shutdown.drain_delay)
            await runner.cleanup()  # closes listeners, then waits for in-flight requests (grace)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await self.engine.stop()
            await MONITOR.stop()
            self.telemetry.shutdown()
        log.info("healthd stopped after %.1fs, exit %d", time.monotonic() - started, self.exit_code)
        return self.exit_code
