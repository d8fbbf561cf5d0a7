"""`heartbeat`: a pass means the application posted a pass within `ttl`.

The application calls the admin API (`POST /heartbeat/{check}` with
`{"status": "pass|warn|fail", "message": "..."}`); the admin handler hands the beat
to this check's `post()`, and each run reads the latest beat: none yet or older than
`ttl` is a failure, a posted warn or fail is that outcome with the posted message.
A reload that leaves the spec unchanged keeps the check object, so the beat survives.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import model_validator

from healthd.checks.base import SpecBase
from healthd.deadline import Deadline
from healthd.durations import Duration, human_duration
from healthd.errors import CheckFailed
from healthd.model import Observation, Outcome, Reason

POSTABLE = {"pass": Outcome.PASS, "warn": Outcome.WARN, "fail": Outcome.FAIL}
MESSAGE_LIMIT = 300


class HeartbeatSpec(SpecBase):
    kind: Literal["heartbeat"]
    ttl: Duration

    @model_validator(mode="after")
    def _ttl(self) -> HeartbeatSpec:
        if self.ttl <= 0:
            raise ValueError("ttl: must be positive")
        return self

    def build(self) -> HeartbeatCheck:
        return HeartbeatCheck(self.ttl)


@dataclass(frozen=True, slots=True)
class Beat:
    outcome: Outcome
    message: str
    at: float  # monotonic


class HeartbeatCheck:
    """Holds the latest beat; `post()` is called by the admin API, `__call__` by the runner."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self.last: Beat | None = None

    def post(self, status: str, message: str = "") -> Beat:
        """Record a beat; `status` is one of pass, warn, fail (ValueError otherwise)."""
        outcome = POSTABLE.get(status)
        if outcome is None:
            raise ValueError(f"status must be one of pass, warn, fail (got {status!r:.40})")
        line = message.strip().splitlines()[0] if message.strip() else ""
        self.last = Beat(outcome, line[:MESSAGE_LIMIT], self.clock())
        return self.last

    async def __call__(self, deadline: Deadline) -> Observation:
        beat = self.last
        ttl = human_duration(self.ttl)
        if beat is None:
            raise CheckFailed(Reason.UNHEALTHY, f"no heartbeat received yet (ttl {ttl})")
        age = self.clock() - beat.at
        if age > self.ttl:
            raise CheckFailed(
                Reason.UNHEALTHY,
                f"heartbeat expired: last one {human_duration(age)} ago, ttl {ttl}",
            )
        if beat.outcome is Outcome.FAIL:
            raise CheckFailed(Reason.UNHEALTHY, beat.message or "the application reported fail")
        text = beat.message or f"heartbeat {human_duration(age)} ago"
        return Observation(beat.outcome, text)
