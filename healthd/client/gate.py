"""`Gate`: a circuit breaker fed by a healthd's state (reference §18, the seed's Hystrix).

    gate = Gate("http://orders:8099")          # readiness; or check="db" (with a token)
    await gate.start()                         # connected, first state known (or ClientError)
    async with gate:                           # Unavailable(reason) at once, or the call runs
        await call_orders()

    closed      calls run. The upstream turning unhealthy, draining or unknown opens it at
                once; so do `failures` failed calls within `window` seconds.
    open        every call raises Unavailable at once: nothing is sent to the upstream.
                Open because of the upstream: until it is back (healthy or degraded; a
                check: pass or warn). Open because of failed calls: for `cooldown` seconds.
    half_open   then one trial call runs (others raise Unavailable meanwhile): its success
                closes the gate, its failure opens it again for `cooldown`.

A failed call is one whose block raised an instance of `count` (default: Exception; never
Unavailable itself nor a cancellation). The gate never reports anything back into the
upstream's readiness: it only reads the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Literal

import aiohttp

from healthd.client.watch import BACKOFF, UNKNOWN, ClientError, Watch

GateState = Literal["closed", "open", "half_open"]
GOOD_GROUP = frozenset({"healthy", "degraded"})
GOOD_CHECK = frozenset({"pass", "warn"})


class Unavailable(ClientError):
    """The gate is open: the call was not made (`reason`: one line, why)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Gate:
    """A circuit breaker over calls to the service a healthd at `url` watches."""

    def __init__(
        self,
        url: str,
        check: str | None = None,
        *,
        token: str | None = None,
        group: str = "readiness",
        failures: int = 5,
        window: float = 10.0,
        cooldown: float = 5.0,
        count: type[BaseException] | tuple[type[BaseException], ...] = Exception,
        session: aiohttp.ClientSession | None = None,
        backoff: tuple[float, float] = BACKOFF,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failures < 1 or window <= 0 or cooldown < 0:
            raise ValueError("Gate: failures >= 1, window > 0 and cooldown >= 0")
        self.check, self.group = check, group
        self.failures, self.window, self.cooldown, self.count = failures, window, cooldown, count
        self.clock = clock
        filters = {"checks": [check]} if check is not None else {"groups": [group]}
        self.watch = Watch(url, token, session=session, backoff=backoff, clock=clock, **filters)
        self.watch.on_change = self._upstream_changed
        self.state: GateState = "open"  # until the first state arrives
        self.reason = "not started"
        self._until: float | None = None  # open because of failed calls: until then
        self._trial: asyncio.Task[object] | None = None  # the half-open call in flight
        self._failed: deque[float] = deque()  # failed calls' times within `window`
        self._known = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # --- the upstream ------------------------------------------------------------------------

    @property
    def upstream(self) -> str:
        """The upstream's state (or the check's status) as the stream says now."""
        return self.watch.state(self.group, self.check)

    def _good(self, state: str) -> bool:
        return state in (GOOD_CHECK if self.check is not None else GOOD_GROUP)

    def _why(self, state: str) -> str:
        what = f"check {self.check}" if self.check is not None else self.group
        where = str(self.watch.url.with_query(None))
        if state == UNKNOWN and not self.watch.connected:
            return f"{what} unknown: {self.watch.reason}"
        return f"{where}: {what} is {state}"

    def _upstream_changed(self) -> None:
        state, watch = self.upstream, self.watch
        seen = watch.checks if self.check is not None else watch.groups
        first = not self._known.is_set()
        if watch.connected and (self.check or self.group) in seen:
            self._known.set()
        if not self._good(state):
            self.state, self.reason, self._until = "open", self._why(state), None
            self._trial = None
        elif self.state == "open" and self._until is None:
            # Back: one trial call first (at start, the first state closes it at once).
            self.state, self.reason = ("closed", "") if first else ("half_open", self.reason)

    async def start(self, within: float = 10.0) -> None:
        """Follow the stream; return once the upstream's state is known (ClientError: not
        `within` seconds, or the URL is not a healthd)."""
        if self._task is None:
            self._task = asyncio.create_task(self._follow(), name="healthd-gate")
        known = asyncio.ensure_future(self._known.wait())
        try:
            await asyncio.wait({known, self._task}, timeout=within, return_when="FIRST_COMPLETED")
        finally:
            known.cancel()
        if self._task.done():
            await self._task  # its one-line error (NotHealthd, ClientError)
        if not self._known.is_set():
            raise ClientError(f"{self._why(self.upstream)} (no state within {within:g}s)")

    async def _follow(self) -> None:
        try:
            async for _ in self.watch:
                pass  # the Watch keeps the states; _upstream_changed moves the gate
        except ClientError as exc:  # not a healthd: open for good, with that line
            self.state, self.reason, self._until = "open", str(exc), None
            raise

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ClientError):
                await self._task  # a ClientError was start()'s to raise
            self._task = None

    # --- calls -------------------------------------------------------------------------------

    async def __aenter__(self) -> None:
        self.admit()

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.done(e)

    def admit(self) -> None:
        """Let this call through, or raise Unavailable (never waits, never connects)."""
        state = self.state
        if state == "closed":
            return
        if state == "open":
            if self._until is None or self.clock() < self._until:
                raise Unavailable(self.reason)
            self.state = "half_open"
        if self._trial is not None:
            raise Unavailable(f"{self.reason}; a trial call is in flight")
        self._trial = asyncio.current_task()

    def done(self, error: BaseException | None) -> None:
        """The call's outcome (its exception, or None)."""
        failed = (
            error is not None
            and isinstance(error, self.count)
            and not isinstance(error, Unavailable)
        )
        task = asyncio.current_task()
        if self._trial is not None and task is self._trial:
            self._trial = None
            if failed:
                self._open_for(f"the trial call failed: {_brief(error)}")
            elif error is None or not isinstance(error, asyncio.CancelledError):
                self.state, self.reason = "closed", ""
                self._failed.clear()
            return
        if not failed or self.state != "closed":
            return
        now = self.clock()
        self._failed.append(now)
        while self._failed and self._failed[0] <= now - self.window:
            self._failed.popleft()
        if len(self._failed) >= self.failures:
            self._open_for(
                f"{len(self._failed)} failed calls within {self.window:g}s; last: {_brief(error)}"
            )

    def _open_for(self, why: str) -> None:
        self.state, self.reason = "open", why
        self._until = self.clock() + self.cooldown
        self._failed.clear()


def _brief(error: BaseException | None) -> str:
    text = f"{type(error).__name__}: {error}" if error is not None else "none"
    return text.splitlines()[0][:200] if text else "none"
