"""The supervisor: the daemon's shell step for `healthd run -- CMD` (reference §16).

The daemon (lifecycle.py) drains and closes its listeners; this fills in the step
between: after `drain_delay` the child's process group gets `shutdown.stop_signal`, then
up to `stop_timeout` to exit, then SIGKILL; only then do the listeners close. It also
forwards signals, reaps orphans, feeds the `process` check and writes the exit line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import shlex
import signal
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from healthd.checks.base import Supervised
from healthd.config import Settings
from healthd.durations import human_duration
from healthd.supervise.child import Child
from healthd.supervise.exitline import Ended, Stop, signame
from healthd.supervise.reaper import Reaper, become_reaper

if TYPE_CHECKING:
    from healthd.lifecycle import Daemon

log = logging.getLogger("healthd")
Handlers = dict[int, Callable[[], None]]
STOPPING = (signal.SIGTERM, signal.SIGINT)  # the daemon's: they start the stop order
NOT_FORWARDED = {
    signal.SIGKILL, signal.SIGSTOP,  # cannot be caught
    signal.SIGCHLD,  # ours: the reaper's
    signal.SIGPIPE,  # healthd's own broken pipes, not an operator's message to the app
    # faults raised by healthd's own code, never sent on purpose
    signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGSYS, signal.SIGTRAP,
    signal.SIGABRT,
}  # fmt: skip
# `signal.Signals` names only SIGRTMIN and SIGRTMAX of the real-time signals: all of them
# come from valid_signals().
FORWARDED = tuple(
    sorted(int(s) for s in signal.valid_signals() if s not in NOT_FORWARDED | set(STOPPING))
)
KILL_WAIT = 5.0  # after SIGKILL: only a process stuck in the kernel (D state) takes longer


class Supervisor:
    """Runs `argv` as healthd's child and stops it in the order of §16."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.child = Child(argv)
        self.reaper = Reaper()
        self._daemon: Daemon | None = None
        self._reason = ""  # the signal that started the stop, or "child ended"
        self._gone = asyncio.Event()
        self._cut = asyncio.Event()  # a second SIGTERM/SIGINT: cut the current wait short
        self._cut_by = ""
        self._stop: Stop | None = None

    @property
    def app(self) -> Supervised:
        return self.child

    def configure(self, settings: Settings) -> Settings:
        """Settings as loaded (at start or reload), with the implicit `app` check."""
        return settings.supervised()

    def handlers(self, own: Handlers) -> Handlers:
        """The daemon's signal handlers, and: SIGCHLD reaps; SIGTERM/SIGINT noted for the
        exit line; every other catchable signal forwarded to the child's group (SIGHUP
        still reloads, SIGUSR1 still dumps)."""
        out = dict(own)
        out |= {s: functools.partial(self._stopping, s, own[s]) for s in STOPPING if s in own}
        out |= {s: functools.partial(self._forward, s, own.get(s)) for s in FORWARDED}
        out[signal.SIGCHLD] = self.reaper.scan
        return out

    def _stopping(self, sig: int, handler: Callable[[], None]) -> None:
        self._reason = self._reason or signame(sig)
        handler()

    def _forward(self, sig: int, own: Callable[[], None] | None) -> None:
        if self.child.signal_group(sig):
            log.debug("%s forwarded to the child's process group %s", signame(sig), self.child.pid)
        if own is not None:
            own()

    # --- start ----------------------------------------------------------------------------------

    def start(self, daemon: Daemon) -> None:
        """Start the child now (synchronously: the `app` check's first run finds it)."""
        self._daemon = daemon
        how = become_reaper()
        self.child.on_end(self._ended)
        try:
            pid = self.child.spawn(daemon.settings.shutdown.stop_signum)
        except OSError as exc:  # resolve() said it would run: a race with the filesystem
            log.error("run: %s: %s", self.child.argv[0], exc.strerror or exc)  # noqa: TRY400
            self.child.failed(127 if isinstance(exc, FileNotFoundError) else 126)
            return
        self.reaper.watch(pid, self.child.reaped)
        log.info("supervising pid %d: %s (orphans: %s)", pid, shlex.join(self.child.argv), how)

    def _ended(self, end: Ended) -> None:
        self._gone.set()
        daemon = self._daemon
        assert daemon is not None
        if daemon.shutting_down:
            log.info("child pid %s %s", self.child.pid, end.describe())
            return
        self._reason = "child ended"
        log.warning(
            "child pid %s %s on its own after %s: stopping (restarting it is the "
            "orchestrator's job)",
            self.child.pid, end.describe(), human_duration(self.child.uptime),
        )  # fmt: skip
        daemon.request_stop("child ended")

    # --- stop -----------------------------------------------------------------------------------

    def hurry(self, signame: str) -> bool:
        """A second SIGTERM/SIGINT: cut the current wait short (the drain: stop signal now;
        stop_timeout: SIGKILL now). False once the child is gone: nothing to cut."""
        if self._gone.is_set():
            return False
        log.warning("second %s: cutting the wait short", signame)
        self._cut_by = signame
        self._cut.set()
        return True

    async def _wait(self, seconds: float) -> str:
        """Until `seconds` pass, the child ends or a second signal comes; what cut it short."""
        if not self._gone.is_set() and not self._cut.is_set():
            waits = [asyncio.ensure_future(e.wait()) for e in (self._gone, self._cut)]
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
            for wait in waits:
                wait.cancel()
        if self._gone.is_set():
            return "the child ended"
        if self._cut.is_set():
            self._cut.clear()
            return self._cut_by
        return ""

    async def stop(self, drain_delay: float) -> None:
        """The shell's step, between drain_delay and closing the listeners."""
        daemon = self._daemon
        assert daemon is not None
        shutdown = daemon.settings.shutdown
        began = time.monotonic()
        drain_cut = await self._wait(drain_delay) if self._reason != "child ended" else ""
        drained = time.monotonic() - began
        sent, killed, took = None, "", self.child.uptime
        if self.child.running:
            sent, sent_at = shutdown.stop_signal, time.monotonic()
            log.info(
                "%s to the child's process group %d; up to %s to exit (stop_timeout)",
                sent, self.child.pid, human_duration(shutdown.stop_timeout),
            )  # fmt: skip
            self.child.signal_group(shutdown.stop_signum)
            cut = await self._wait(shutdown.stop_timeout)
            if self.child.running:
                killed = cut or "stop_timeout"
                log.warning(
                    "child pid %d still running %s after %s: SIGKILL to its group",
                    self.child.pid, human_duration(time.monotonic() - sent_at),
                    sent if killed == "stop_timeout" else f"{sent} (a second {killed})",
                )  # fmt: skip
                self.child.signal_group(signal.SIGKILL)
                await self._wait(KILL_WAIT)
            took = time.monotonic() - sent_at
        self.child.kill_stragglers()
        end = self.child.end or Ended(signal=signal.SIGKILL)  # stuck in the kernel: as killed
        self._stop = Stop(
            self._reason or "stop", drained, end, took, sent, drain_cut, killed,
            len(daemon.inflight.requests),
        )  # fmt: skip

    def finish(self, cancelled: int) -> int:
        """Log the exit line (after the listeners closed); the process's exit code."""
        self.reaper.close()
        stop = self._stop
        if stop is None:  # serving failed before the stop step
            return 1
        stop = dataclasses.replace(stop, cancelled=cancelled)
        fields = {"event": "exit", "exit": stop.fields()}
        log.info("%s", stop.line(), extra={"fields": fields})
        return stop.code
