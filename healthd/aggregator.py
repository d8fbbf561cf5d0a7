"""Pure: a group's checks and the drain flag → one State (DESIGN §2, first rule wins)."""

from __future__ import annotations

from collections.abc import Iterable

from healthd.model import CheckState, State, Status


def aggregate(checks: Iterable[CheckState], draining: bool) -> State:
    """draining > unhealthy > unknown > degraded > healthy."""
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
