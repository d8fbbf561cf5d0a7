"""Pure: a group's checks and the drain flag → one State (reference §2, first rule wins).

`aggregate` walks the checks; `weigh` and `fold` say the same rules as counts, which is
how the store keeps every group's state without a walk (tests hold the two equal).
"""

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


# The same rules as counts, for the store's per-group tallies: a check weighs on its
# groups by one of these codes, and a group's state follows from how many weigh each way.
NEUTRAL, FAILING, UNKNOWN, DEGRADED = range(4)


def weigh(critical: bool, status: Status) -> int:
    """The code by which a check with `status` weighs on its groups' state."""
    if status is Status.PASS:
        return NEUTRAL
    if not critical:
        return DEGRADED
    if status.failing:
        return FAILING
    return UNKNOWN if status is Status.UNKNOWN else DEGRADED


def fold(counts: list[int], draining: bool) -> State:
    """A group's state from its members' counts by code (`counts[FAILING]` and so on)."""
    if draining:
        return State.DRAINING
    if counts[FAILING]:
        return State.UNHEALTHY
    if counts[UNKNOWN]:
        return State.UNKNOWN
    return State.DEGRADED if counts[DEGRADED] else State.HEALTHY
