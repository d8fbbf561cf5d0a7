"""`loop`: healthd's own event loop is responsive (the default liveness check).

The daemon's `LagMonitor` (healthd/lag.py, handed over in the build `Context`) samples
the loop; a run reads the worst lag seen since the previous run, plus one fresh hop.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar, Literal

from pydantic import model_validator

from healthd.checks.base import Context, SpecBase
from healthd.deadline import Deadline
from healthd.durations import Duration, human_duration
from healthd.lag import LagMonitor
from healthd.model import Observation, Outcome, Reason


class LoopSpec(SpecBase):
    spread_first_run = False  # costs nothing, and /livez waits on it: run at start

    kind: Literal["loop"] = "loop"
    example: ClassVar[dict[str, Any]] = {}
    warn_lag: Duration = 0.1
    fail_lag: Duration = 1.0

    @model_validator(mode="after")
    def _levels(self) -> LoopSpec:
        if self.warn_lag >= self.fail_lag:
            raise ValueError("warn_lag: must be below fail_lag")
        return self

    def build(self, context: Context | None = None) -> LoopCheck:
        return LoopCheck(self.warn_lag, self.fail_lag, (context or Context()).lag)


class LoopCheck:
    def __init__(self, warn_lag: float, fail_lag: float, monitor: LagMonitor) -> None:
        self.warn_lag, self.fail_lag = warn_lag, fail_lag
        self.monitor = monitor

    async def __call__(self, deadline: Deadline) -> Observation:
        self.monitor.ensure_running()
        loop = asyncio.get_running_loop()
        before = loop.time()
        await asyncio.sleep(0)
        lag = max(loop.time() - before, self.monitor.take_worst())
        text = f"event loop lag {human_duration(lag)}"
        if lag >= self.fail_lag:
            return Observation(Outcome.FAIL, text, Reason.UNHEALTHY)
        if lag >= self.warn_lag:
            return Observation(Outcome.WARN, text)
        return Observation(message=text)
