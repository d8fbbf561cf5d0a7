"""PID 1 duties: reap every orphan, never stealing a status someone else waits for.

As PID 1 (a container's first process) every orphan of the container is reparented to
healthd; elsewhere `PR_SET_CHILD_SUBREAPER` makes the app's grandchildren come to
healthd instead of init. Either way their zombies are ours to reap, on each SIGCHLD.

ATTENTION: a blind `waitpid(-1)` steals the status of a child asyncio waits for (an
`exec` check's plugin: asyncio then reports 255, or races on 3.11). So a zombie is only
peeked at (`waitid(P_ALL, WNOWAIT)`) and then:
  - the supervised child (`watch`): reaped here, its status handed over;
  - not a session leader: an orphan (an `exec` plugin always leads its own session,
    `start_new_session=True`, so no plugin looks like this): reaped;
  - a session leader: maybe a plugin whose waiter is about to reap it; left alone for
    `LEAVE_ALONE`, then reaped as an orphan if still there. While one waits at the head
    of the zombie list, the peek is retried with a growing delay (no other event tells
    us that asyncio reaped it).
Everything runs in the event loop's thread, as does every asyncio spawn: no spawn is
ever half-registered while this looks.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import time
from collections.abc import Callable

from healthd.supervise.exitline import Ended

log = logging.getLogger("healthd")
PR_SET_CHILD_SUBREAPER = 36
LEAVE_ALONE = 1.0  # seconds a session-leading zombie is left to its own waiter
FIRST_RETRY, MAX_RETRY = 0.01, 0.25
FLAGS = os.WEXITED | os.WNOHANG


def become_reaper() -> str:
    """`pid 1`, `subreaper`, or why neither (then orphans go to init, as without healthd)."""
    if os.getpid() == 1:
        return "pid 1"
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return "no prctl on this system"
    if prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        return f"PR_SET_CHILD_SUBREAPER failed: {os.strerror(ctypes.get_errno())}"
    return "subreaper"


def _session_leader(pid: int) -> bool:
    try:
        stat = open(f"/proc/{pid}/stat", "rb").read()  # noqa: SIM115 - one short read
    except OSError:
        return False  # gone already, or no /proc: treat as an orphan
    fields = stat.rsplit(b")", 1)[1].split()  # after "(comm)": state ppid pgrp session
    return int(fields[3]) == pid


class Reaper:
    """Reaps zombies on SIGCHLD; `watch(pid, callback)` for the ones healthd waits for."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.orphans = 0  # reaped so far
        self._watched: dict[int, Callable[[Ended], None]] = {}
        self._first_seen: dict[int, float] = {}
        self._retry: asyncio.TimerHandle | None = None
        self._delay = FIRST_RETRY

    def watch(self, pid: int, callback: Callable[[Ended], None]) -> None:
        self._watched[pid] = callback
        self.scan()  # it may have ended before we looked

    def scan(self) -> None:
        """Reap what is ours to reap (the SIGCHLD handler)."""
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        for pid in list(self._watched):
            self._take(pid)
        while True:
            try:
                peek = os.waitid(os.P_ALL, 0, FLAGS | os.WNOWAIT)
            except ChildProcessError:
                return  # no children at all
            if peek is None:
                self._delay, self._first_seen = FIRST_RETRY, {}
                return
            pid = peek.si_pid
            if pid in self._watched:
                self._take(pid)
            elif self._leave_alone(pid):
                self._retry_later()
                return
            elif self._take(pid):
                self.orphans += 1
                log.debug("reaped orphan %d", pid)

    def _take(self, pid: int) -> bool:
        try:
            result = os.waitid(os.P_PID, pid, FLAGS)
        except ChildProcessError:
            return False  # someone else took it meanwhile
        if result is None:
            return False
        self._first_seen.pop(pid, None)
        callback = self._watched.pop(pid, None)
        if callback is not None:
            callback(Ended.of(result))
        return True

    def _leave_alone(self, pid: int) -> bool:
        if not _session_leader(pid):
            return False
        first = self._first_seen.setdefault(pid, self.clock())
        return self.clock() - first < LEAVE_ALONE

    def _retry_later(self) -> None:
        loop = asyncio.get_running_loop()
        self._retry = loop.call_later(self._delay, self.scan)
        self._delay = min(self._delay * 2, MAX_RETRY)

    def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
