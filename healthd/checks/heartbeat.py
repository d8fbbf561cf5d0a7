"""`heartbeat`: a pass means the application posted a pass within `ttl`.

The application calls the admin API (`POST /heartbeat/{check}` with
`{"status": "pass|warn|fail", "message": "..."}`); the admin view posts the beat to the
store, and each run reads the latest beat from there (the build `Context`'s `beats`):
none yet or older than `ttl` is a failure, a posted warn or fail is that outcome with
the posted message. The store keeps a beat while the check exists, reloads included.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

from pydantic import model_validator

from healthd.checks.base import Beats, Context, SpecBase
from healthd.deadline import Deadline
from healthd.durations import Duration, human_duration
from healthd.errors import CheckFailed
from healthd.model import Observation, Outcome, Reason


class HeartbeatSpec(SpecBase):
    kind: Literal["heartbeat"] = "heartbeat"
    example: ClassVar[dict[str, Any]] = {"ttl": "10s"}
    ttl: Duration

    @model_validator(mode="after")
    def _ttl(self) -> HeartbeatSpec:
        if self.ttl <= 0:
            raise ValueError("ttl: must be positive")
        return self

    def build(self, context: Context | None = None) -> HeartbeatCheck:
        context = context or Context()
        return HeartbeatCheck(self.name, self.ttl, context.beats, context.clock)


class HeartbeatCheck:
    """Reads the latest beat posted for `name`; never holds one itself."""

    def __init__(self, name: str, ttl: float, beats: Beats, clock: Callable[[], float]) -> None:
        self.name, self.ttl, self.beats, self.clock = name, ttl, beats, clock

    async def __call__(self, deadline: Deadline) -> Observation:
        beat = self.beats.beat(self.name)
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
