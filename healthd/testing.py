"""Helpers for tests, ours and our users': a scriptable check and a clock moved by hand."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from healthd.deadline import Deadline
from healthd.errors import CheckFailed
from healthd.model import Observation, Outcome, Reason


class ManualClock:
    """A monotonic clock that moves only when told: `clock.advance(5)`."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeCheck:
    """A check that answers from a script (the last entry repeats), after `delay`.

    An entry is an Outcome, or an exception to raise (`ConnectionRefusedError()`).
    `calls` counts runs; `deadlines` records the budget each run was given. With a
    ManualClock as `clock`, each call moves it on by `cost` seconds instead of sleeping.
    """

    def __init__(
        self,
        outcomes: Iterable[Outcome | BaseException] = (Outcome.PASS,),
        delay: float = 0.0,
        message: str = "",
        *,
        clock: ManualClock | None = None,
        cost: float = 0.0,
    ) -> None:
        self.outcomes = list(outcomes) or [Outcome.PASS]
        self.delay = delay
        self.message = message
        self.clock, self.cost = clock, cost
        self.calls = 0
        self.deadlines: list[float] = []

    async def __call__(self, deadline: Deadline) -> Observation:
        index = min(self.calls, len(self.outcomes) - 1)
        self.calls += 1
        self.deadlines.append(deadline.remaining())
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.clock is not None:
            self.clock.advance(self.cost)
        outcome = self.outcomes[index]
        if isinstance(outcome, BaseException):
            raise outcome
        if outcome is Outcome.FAIL:
            raise CheckFailed(Reason.UNHEALTHY, self.message or "scripted failure")
        if outcome is Outcome.TIMEOUT:
            raise TimeoutError
        return Observation(outcome, self.message or outcome.value)
