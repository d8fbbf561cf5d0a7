"""start → serve → SIGTERM → draining → drain_delay → stop listeners → grace → flush → exit 0.

aiohttp's `run_app` closes the listening sockets first on a signal; we own the signals
instead (`AppRunner(handle_signals=False)`), so probes keep getting answers — 503 on
readiness, 200 on liveness — for `shutdown.drain_delay` before the listeners close.

    SIGTERM/SIGINT  draining at once; every answer from then on says `Connection: close`
                    (keep-alive clients reconnect while the listener is still open, so
                    none holds an idle connection when it closes); after drain_delay the
                    listeners close, requests in flight get `grace` to finish, the rest
                    are cancelled and logged; checks stop; telemetry flushes; exit 0.
    second signal   exit at once with code 1 (`os._exit`: nothing waits, nothing flushes)
    SIGHUP          reload (as POST /admin/reload)
    SIGUSR1         one log line with a diagnostic dump

A `Shell` (supervise/: `healthd run -- CMD`) fills in one step between drain_delay and
the listeners' close (stopping the child it runs), and may add signal handlers.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, NoReturn, Protocol

from healthd.checks.base import Supervised
from healthd.config import DEFAULT_CONFIG, Settings, load_settings
from healthd.durations import human_duration
from healthd.errors import ConfigError
from healthd.fleet.exposed import create_fleet, summary
from healthd.health import Health
from healthd.model import CheckResult
from healthd.observers import Telemetry, setup
from healthd.serving import Servers, describe
from healthd.watchers import Watchers
from healthd.web import admin, base, probes
from healthd.web.admin import ReloadResult

log = logging.getLogger("healthd")
RESTART_ONLY_SERVER_KEYS = (
    "listen", "keepalive_timeout", "grpc_listen", "agent_listen", "watch_keepalive"
)  # fmt: skip
Handlers = dict[int, Callable[[], None]]


# --- shell hook (supervise/, reference §16) ------------------------------------------------
class Shell(Protocol):
    """What wraps the daemon's order with a step of its own (the supervisor, §16)."""

    @property
    def app(self) -> Supervised: ...  # what the `process` check reads

    def configure(self, settings: Settings) -> Settings: ...  # at start and on each reload

    def handlers(self, own: Handlers) -> Handlers: ...  # the daemon's, wrapped and extended

    def start(self, daemon: Daemon) -> None: ...  # once listening, handlers installed

    def hurry(self, signame: str) -> bool: ...  # a second signal: False = nothing to cut

    async def stop(self, drain_delay: float) -> None: ...  # drain_delay, then its own stop

    def finish(self, cancelled: int) -> int: ...  # after the close: exit line, exit code


# --- end of shell hook ---------------------------------------------------------------------------


class Daemon:
    """One running healthd: a Health (the core), the listeners and the signals that steer
    them. The settings belong to the Health (`self.settings` reads them there)."""

    def __init__(
        self,
        settings: Settings,
        config_path: Path | None = None,
        *,
        telemetry: Telemetry | None = None,
        shell: Shell | None = None,
    ) -> None:
        self.config_path = config_path
        self.shell = shell  # supervise/ (§16): its stop step runs before the listeners close
        self.telemetry = telemetry or setup(settings)
        self.inflight = base.InFlight()  # requests that wait on something, for the drain
        self.health = Health(
            settings=settings,
            metrics=self.telemetry.metrics,
            tracer=self.telemetry.tracer,
            observers=self.telemetry.observers,
            app=shell.app if shell is not None else None,
        )
        views = self.health.views()
        self.watchers = Watchers(settings.server.max_watchers)  # SSE and gRPC streams
        self.app = probes.make_app(
            views, self.telemetry.routes, self.telemetry.middlewares, self.inflight,
            metrics=self.telemetry.metrics, watchers=self.watchers,
        )  # fmt: skip
        self.fleet = create_fleet(settings.fleet, self.health.store, self.telemetry.metrics)
        self.admin_app = admin.make_admin_app(views, self, [self.inflight.middleware], self.fleet)
        self.servers = Servers(
            views, (self.app, self.admin_app), self.inflight, self.watchers,
            self.telemetry.metrics, tracing=self.telemetry.tracer is not None,
        )  # fmt: skip
        if self.telemetry.metrics is not None:
            bad = self.servers.bad_requests
            self.telemetry.metrics.count(
                "healthd_bad_requests", "requests refused as malformed (4xx before routing)",
                lambda: bad.count,
            )  # fmt: skip
            self.telemetry.metrics.gauge(
                "healthd_watchers", "open streams (SSE /watch, gRPC Watch)", ["transport"],
                self.watchers.gauge,
            )  # fmt: skip
        self.exit_code = 0
        self.shutting_down = False
        self._stop = asyncio.Event()
        self._signal = ""
        self._signalled_at = 0.0
        self._started = time.monotonic()
        self._reload_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- signals --------------------------------------------------------------------------------

    def request_stop(self, signame: str = "stop") -> None:
        """First call: start draining. Second: exit at once with code 1."""
        if self.shutting_down:
            if self.shell is not None and self.shell.hurry(signame):
                return  # supervised: the second signal cuts the current wait short (§16)
            log.warning("second %s while shutting down: exiting at once with code 1", signame)
            for handler in logging.getLogger().handlers:
                handler.flush()
            sys.stderr.flush()
            os._exit(1)  # a SystemExit here would wait for the drain and in-flight requests
        self.shutting_down = True
        self.inflight.closing = True  # answers now say `Connection: close`
        self._signal, self._signalled_at = signame, time.monotonic()
        self.health.drain()
        if self.fleet is not None:
            self.fleet.on_signal(self._spawn)  # takes a drain slot if one is free
        log.info(
            "%s: draining (readiness fails; listeners stay open %s)",
            signame, human_duration(self.settings.shutdown.drain_delay),
        )  # fmt: skip
        if signame == "SIGINT" and sys.stderr.isatty():  # a person at a terminal pressed Ctrl-C
            then = "stop the app" if self.shell is not None else "exit"
            delay = human_duration(self.settings.shutdown.drain_delay)
            print(f"healthd: draining {delay}; Ctrl-C again to {then} now", file=sys.stderr)
        self._stop.set()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_hup(self) -> None:
        if self.shutting_down:
            log.info("SIGHUP while shutting down: reload ignored")
            return
        self._spawn(self.reload())

    @property
    def settings(self) -> Settings:
        return self.health.settings

    # --- what the admin API steers (admin.Control) ----------------------------------------------

    @property
    def draining(self) -> bool:
        return self.health.draining

    def drain(self) -> None:
        self.health.drain()

    def ready(self) -> None:
        self.health.ready()

    async def beat(self, name: str, status: str, message: str) -> CheckResult:
        return await self.health.beat(name, status, message)

    def _on_usr1(self) -> None:
        log.info("diagnostics: %s", json.dumps(self.diagnostics(), separators=(",", ":")))

    # --- reload ---------------------------------------------------------------------------------

    async def reload(self) -> ReloadResult:
        """Load and validate the config file; apply it, or keep running the old one."""
        async with self._reload_lock:
            path = self.config_path or DEFAULT_CONFIG
            try:
                new = load_settings(self.config_path)
                new = self.shell.configure(new) if self.shell is not None else new
            except ConfigError as exc:
                return self._reject(str(exc).splitlines(), path)
            new, notes = self._pin(new)
            for note in notes:
                log.warning("reload: %s", note)
            old = self.settings
            changes = await self.health.reload(new)  # the one swap of the settings
            added, removed, changed = changes.added, changes.removed, changes.changed
            self.watchers.limit = new.server.max_watchers  # open streams beyond it stay open
            await self._apply_admin(new)
            if new.logging != old.logging:
                from healthd.observers.log import configure

                configure(new.logging)
            log.info(
                "reload: applied %s (%d checks; added %s, removed %s, changed %s)",
                path, len(new.all_checks), added or "none", removed or "none", changed or "none",
            )  # fmt: skip
            self._notify_reload(True)
            return ReloadResult(True, [], added, removed, changed, notes)

    def _reject(self, errors: list[str], path: Path) -> ReloadResult:
        for line in errors:
            log.error("reload failed: %s", line)
        log.error("reload: %s is invalid; the running configuration stays", path)
        self._notify_reload(False)
        return ReloadResult(False, errors=errors)

    def _notify_reload(self, ok: bool) -> None:
        if self.telemetry.metrics is not None:
            self.telemetry.metrics.reload(ok)

    def _pin(self, new: Settings) -> tuple[Settings, list[str]]:
        """Keep what cannot change without a restart (the probe listener, keep-alive, tracing)."""
        old, notes = self.settings, []
        keys = RESTART_ONLY_SERVER_KEYS + (("admin_listen",) if self.servers.admin_on else ())
        keep = {k: getattr(old.server, k) for k in keys}
        keep = {k: v for k, v in keep.items() if getattr(new.server, k) != v}
        notes += [f"server.{k} needs a restart; keeping {v}" for k, v in keep.items()]
        update: dict[str, Any] = {}
        if keep:
            update["server"] = new.server.model_copy(update=keep)
        if new.tracing != old.tracing:
            update["tracing"] = old.tracing
            notes.append("tracing needs a restart; keeping the running settings")
        if new.fleet != old.fleet:
            update["fleet"] = old.fleet
            notes.append("fleet needs a restart; keeping the running settings")
        return (new.model_copy(update=update) if update else new), notes

    async def _apply_admin(self, new: Settings) -> None:
        """A token set by a reload starts the admin listener; a cleared one stops it."""
        if new.server.token.get_secret_value() and not self.servers.admin_on:
            problem = ""
            try:
                await self.servers.start_admin()
            except ConfigError as exc:
                problem = str(exc)
            if problem:
                log.error("reload: admin API not started: %s", problem)
        elif not new.server.token.get_secret_value() and self.servers.admin_on:
            await self.servers.stop_admin()
            log.info("admin API off: server.token is now empty")

    # --- diagnostics ----------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """The daemon's own part of /admin/state and the SIGUSR1 dump."""
        now = time.monotonic()
        fleet = {"fleet": summary(self.fleet)} if self.fleet is not None else {}
        state = admin.state_view(self.health.store, self.health.runs.inflight())
        return (
            state
            | fleet
            | {
                "shutting_down": self.shutting_down,
                "uptime_s": round(now - self._started, 3),
                "config": str(self.config_path or DEFAULT_CONFIG),
                "requests_served": self.inflight.served,
                "requests_in_flight": [
                    {"request": describe(request), "age_ms": round((now - since) * 1000, 1)}
                    for request, since in self.inflight.requests.values()
                ],
            }
        )

    def diagnostics(self) -> dict[str, Any]:
        return self.info() | {"tasks": len(asyncio.all_tasks())}

    # --- serving --------------------------------------------------------------------------------

    async def run_and_exit(self) -> NoReturn:
        """`serve()`, then end the process from inside the loop (`healthd run`).

        The signal handlers stay installed to the last instruction: once removed, a SIGHUP
        or SIGUSR1 would kill the process by its default action, and tearing the
        interpreter down takes up to a second of CPU (grpc, the drivers). Everything has
        been closed and flushed by then.
        """
        code = await self.serve(release_signals=False)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    async def serve(self, *, release_signals: bool = True) -> int:
        loop = asyncio.get_running_loop()
        server = self.settings.server
        await self.servers.start()
        self.health.start()
        if self.fleet is not None:
            self.fleet.start()
        # What start-up built (specs, checks, modules) lives as long as the process: moved
        # out of the collector's generations, a full collection no longer walks it (bench/scale.py).
        gc.freeze()
        handlers: Handlers = {
            signal.SIGTERM: lambda: self.request_stop("SIGTERM"),
            signal.SIGINT: lambda: self.request_stop("SIGINT"),
            signal.SIGHUP: self._on_hup,
            signal.SIGUSR1: self._on_usr1,
        }
        handlers = self.shell.handlers(handlers) if self.shell is not None else handlers
        for sig, callback in handlers.items():
            loop.add_signal_handler(sig, callback)
        if self.shell is not None:
            self.shell.start(self)  # the child starts (and may end) from here
        log.info(
            "healthd listening on %s with %d checks", server.listen, len(self.settings.all_checks)
        )
        self._started = time.monotonic()
        try:
            await self._stop.wait()
            if self.shell is None:
                await asyncio.sleep(self.settings.shutdown.drain_delay)
            else:  # drain_delay (cut short by a second signal or the child's end), stop it
                await self.shell.stop(self.settings.shutdown.drain_delay)
            await self.servers.close()
        finally:
            await self.servers.cleanup()  # what close() left, if serving failed before it
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self.fleet is not None:
                await self.fleet.stop()  # revokes the lease: the fleet sees us leave at once
            await self.health.stop()  # the lag monitor too
            self.telemetry.shutdown()
            if release_signals:  # last: until here a second SIGTERM still exits 1
                for sig in handlers:
                    loop.remove_signal_handler(sig)
        if self.shell is not None:  # its exit line says how the child stopped
            self.exit_code = self.shell.finish(self.servers.cancelled)
            return self.exit_code
        now = time.monotonic()
        log.info(
            "healthd exited: %s after %s up, stopped %s after the signal; "
            "%d requests served, %d cancelled at the end of grace; exit %d",
            self._signal or "stop", human_duration(now - self._started),
            human_duration(now - self._signalled_at), self.inflight.served, self.servers.cancelled,
            self.exit_code,
        )  # fmt: skip
        return self.exit_code
