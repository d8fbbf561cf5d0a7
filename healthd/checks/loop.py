"""`loop`: healthd's own event loop is responsive (the default liveness check).

A sampler task sleeps `PERIOD` at a time and records how late it woke; the check
reads the worst lag seen since the previous run, plus the lag of one fresh hop.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from pydantic import model_validator

from healthd.checks.base import SpecBase
from healthd.deadline import Deadline
from healthd.durations import Duration, human_duration
from healthd.model import Observation, Outcome, Reason

PERIOD = 0.05


class LagMonitor:
    """Measures event-loop lag; one per process (`MONITOR`), started lazily on first use."""

    def __init__(self) -> None:
        self.last = 0.0
        self._worst = 0.0
        self._task: asyncio.Task[None] | None = None

    def ensure_running(self) -> None:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._sample(), name="loop-lag")

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(PERIOD)
            self.last = max(0.0, loop.time() - before - PERIOD)
            self._worst = max(self._worst, self.last)

    def take_worst(self) -> float:
        worst, self._worst = self._worst, 0.0
        return worst

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


MONITOR = LagMonitor()


class LoopSpec(SpecBase):
    spread_first_run = False  # costs nothing, and /livez waits on it: run at start

    kind: Literal["loop"]
    warn_lag: Duration = 0.1
    fail_lag: Duration = 1.0

    @model_validator(mode="after")
    def _levels(self) -> LoopSpec:
        if self.warn_lag >= self.fail_lag:
            raise ValueError("warn_lag: must be below fail_lag")
        return self

    def build(self) -> LoopCheck:
        return LoopCheck(self.warn_lag, self.fail_lag)


class LoopCheck:
    def __init__(self, warn_lag: float, fail_lag: float) -> None:
        self.warn_lag, self.fail_lag = warn_lag, fail_lag

    async def __call__(self, deadline: Deadline) -> Observation:
        MONITOR.ensure_running()
        loop = asyncio.get_running_loop()
        before = loop.time()
        await asyncio.sleep(0)
        lag = max(loop.time() - before, MONITOR.take_worst())
        text = f"event loop lag {human_duration(lag)}"
        if lag >= self.fail_lag:
            return Observation(Outcome.FAIL, text, Reason.UNHEALTHY)
        if lag >= self.warn_lag:
            return Observation(Outcome.WARN, text)
        return Observation(message=text)
