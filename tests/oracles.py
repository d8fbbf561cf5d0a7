"""The rules as plain walks: what the store's counted, expiring state is checked against."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from healthd.model import CheckState, State, Status


def aggregate(checks: Iterable[CheckState], draining: bool) -> State:
    """draining > unhealthy > unknown > degraded > healthy, walking the checks."""
    if draining:
        return State.DRAINING
    unknown = degraded = False
    for check in checks:
        if check.critical:
            if check.status.failing:
                return State.UNHEALTHY
            unknown = unknown or check.status is Status.UNKNOWN
            degraded = degraded or check.status is Status.WARN
        else:
            degraded = degraded or check.status is not Status.PASS
    if unknown:
        return State.UNKNOWN
    return State.DEGRADED if degraded else State.HEALTHY


def freshness(state: CheckState, now: float, max_age: float) -> CheckState:
    """`state` as seen at monotonic time `now`: `unknown` when its last result is too old."""
    last = state.last
    if last is None or now - (last.started_at + last.duration) <= max_age:
        return state
    return replace(state, status=Status.UNKNOWN)
