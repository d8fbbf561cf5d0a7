"""The supervised child: started in its own process group with healthd's stdio and
environment, signalled as a group, waited for by the reaper (reaper.py), never by asyncio.

ATTENTION: the child is started with `subprocess.Popen` from the event loop's thread and
its status is taken with `waitid` by the reaper, in the same thread; asyncio's child
watcher never hears of it, and `Popen.wait()/poll()` are never called (either would race
the reaper for the status).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from healthd.errors import CommandError
from healthd.supervise.exitline import Ended

log = logging.getLogger("healthd")
PR_SET_PDEATHSIG = 1


def resolve(argv: Sequence[str]) -> str:
    """The program `argv[0]` names, as a shell finds it; CommandError 127 or 126 if none."""
    if not argv:
        raise CommandError("run: nothing to run after `--`", 127)
    name = argv[0]
    if "/" in name:
        candidates = [Path(name)]
    else:
        found = shutil.which(name)
        if found is not None:
            return found
        path = os.environ.get("PATH") or os.defpath
        candidates = [Path(d or ".") / name for d in path.split(os.pathsep)]
    for candidate in candidates:
        if candidate.exists():
            if candidate.is_dir() or not os.access(candidate, os.X_OK):
                raise CommandError(f"run: {name}: not executable", 126)
            return str(candidate)
    raise CommandError(f"run: {name}: command not found", 127)


def _death_signal(signum: int) -> Callable[[], None]:
    """A preexec function: the child gets `signum` if healthd dies (even of SIGKILL).

    Linux only, and it goes to the child alone, not its group; elsewhere a no-op. Looked
    up before the fork: the forked child only calls it.
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return lambda: None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if os.getppid() != parent:  # healthd died before the prctl: act as it would have
            os.kill(os.getpid(), signum)

    return preexec


class Child:
    """One run of the command. `pid`, `uptime` and `ended` are what the `process` check reads."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = list(argv)
        self.pid: int | None = None
        self.started = 0.0
        self.ended_at = 0.0
        self.end: Ended | None = None
        self._on_end: list[Callable[[Ended], None]] = []
        self._popen: subprocess.Popen[bytes] | None = None  # held: its __del__ must not run

    @property
    def uptime(self) -> float:
        end = self.ended_at if self.end is not None else time.monotonic()
        return end - self.started if self.pid is not None else 0.0

    @property
    def ended(self) -> str | None:
        return self.end.describe() if self.end is not None else None

    @property
    def running(self) -> bool:
        return self.pid is not None and self.end is None

    def on_end(self, callback: Callable[[Ended], None]) -> None:
        self._on_end.append(callback)

    def spawn(self, death_signal: int) -> int:
        """Start it: its own process group (leader: itself), healthd's stdin, stdout, stderr
        and environment, no other descriptor. OSError if it cannot be executed."""
        self._popen = subprocess.Popen(
            self.argv, process_group=0, preexec_fn=_death_signal(death_signal), close_fds=True
        )
        self.pid, self.started = self._popen.pid, time.monotonic()
        return self.pid

    def failed(self, code: int) -> None:
        """It could not be executed after all: it ends as a shell's would (127/126)."""
        self.pid, self.started = 0, time.monotonic()
        self.reaped(Ended(code=code))

    def reaped(self, end: Ended) -> None:
        """The reaper took its status."""
        self.end, self.ended_at = end, time.monotonic()
        if self._popen is not None:
            self._popen.returncode = end.code if end.signal is None else -end.signal
        for callback in self._on_end:
            callback(end)

    def signal_group(self, signum: int) -> bool:
        """Send `signum` to its process group; False if the group is gone."""
        if not self.pid:
            return False
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:
            return False
        except PermissionError:  # the group id was reused by a process we cannot signal
            log.warning("cannot signal process group %d", self.pid)
            return False
        return True

    def kill_stragglers(self) -> None:
        """After it ended: what is left of its group (workers it did not stop) gets SIGKILL."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if self.pid:
                os.killpg(self.pid, signal.SIGKILL)
