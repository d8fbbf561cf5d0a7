"""An app's requests, as the drain sees them (reference §17): which are in flight (method,
path, since when, which task answers them) and when the last one arrived.

Framework-neutral: the aiohttp middleware (embed/aiohttp.py) and an ASGI wrapper track
each request with `track(method, path)` from the task that answers it; probe requests
are not tracked (a load balancer's health checks are not traffic, or the app would
never look quiet).

    track()    a request in flight; `last` moves to its arrival
    quiet()    returns once no request has arrived for `quiet` seconds (or at `until`)
    drained()  returns once nothing is in flight (or at `until`)
    cut()      cancels what is still in flight; the answering code sees `was_cut(task)`
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from healthd.deadline import Clock

NAMED = 10  # requests named in the exit line at most
End = Literal["done", "timeout", "skipped"]  # how a wait ended


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    since: float

    def describe(self) -> str:
        return f"{self.method} {self.path[:200]}"


async def pause(seconds: float, skip: asyncio.Event | None) -> bool:
    """Wait `seconds`, or until `skip` is set (then clear it: it skipped this wait only).
    True when skipped."""
    if skip is None:
        await asyncio.sleep(max(0.0, seconds))
        return False
    try:
        async with asyncio.timeout(max(0.0, seconds)):
            await skip.wait()
    except TimeoutError:
        return False
    skip.clear()
    return True


class Traffic:
    """The requests of one app in flight, and the time the last one arrived."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self.requests: dict[asyncio.Task[Any], Request] = {}
        self.last = float("-inf")  # when the last request arrived (clock)
        self.finished = 0  # requests answered (or cut) since start
        self.closing = False  # shutting down: every answer closes its connection
        self._cut: set[asyncio.Task[Any]] = set()
        self._idle: asyncio.Event | None = None  # made on the loop by drained()

    @contextlib.contextmanager
    def track(self, method: str, path: str) -> Iterator[None]:
        """The current task answers a request until the block ends."""
        task = asyncio.current_task()
        assert task is not None
        now = self.clock()
        self.last = now
        self.requests[task] = Request(method, path, now)
        if self._idle is not None:
            self._idle.clear()
        try:
            yield
        finally:
            del self.requests[task]
            self._cut.discard(task)
            self.finished += 1
            if not self.requests and self._idle is not None:
                self._idle.set()

    async def quiet(self, quiet: float, until: float, skip: asyncio.Event | None = None) -> End:
        """Wait until no request has arrived for `quiet` seconds ("done"), `until` (clock;
        "timeout") or a skip ("skipped")."""
        while True:
            now = self.clock()
            calm_at = self.last + quiet
            if calm_at <= now:
                return "done"
            if now >= until:
                return "timeout"
            # Sleep to the moment the traffic would be quiet; an arrival meanwhile moves
            # `last`, and the next round sleeps to the new moment (no polling between).
            if await pause(min(calm_at, until) - now, skip):
                return "skipped"

    async def drained(self, until: float, skip: asyncio.Event | None = None) -> End:
        """Wait until nothing is in flight ("done"), `until` (clock; "timeout") or a skip
        ("skipped")."""
        if not self.requests:
            return "done"
        idle = self._idle = asyncio.Event()
        waits: set[asyncio.Future[Any]] = {asyncio.ensure_future(idle.wait())}
        if skip is not None:
            waits.add(asyncio.ensure_future(skip.wait()))
        try:
            await asyncio.wait(
                waits, timeout=max(0.0, until - self.clock()), return_when="FIRST_COMPLETED"
            )
        finally:
            for wait in waits:
                wait.cancel()
        if not self.requests:
            return "done"
        if skip is not None and skip.is_set():
            skip.clear()  # it skipped this wait only
            return "skipped"
        return "timeout"

    def cut(self) -> list[Request]:
        """Cancel every request still in flight; the requests cut, oldest first."""
        late = sorted(self.requests.items(), key=lambda item: item[1].since)
        for task, _ in late:
            self._cut.add(task)
            task.cancel()
        return [request for _, request in late]

    def was_cut(self, task: asyncio.Task[Any] | None) -> bool:
        """The task's request was cancelled by `cut` (not by its client going away)."""
        return task in self._cut

    async def reaped(self, until: float) -> None:
        """Wait (up to `until`, clock) for the requests cut to end."""
        tasks = list(self.requests)
        if tasks:
            await asyncio.wait(tasks, timeout=max(0.0, until - self.clock()))
