"""Pure: a group's checks and the drain flag → one State (reference §2, first rule wins):
draining > unhealthy > unknown > degraded > healthy.

`weigh` and `fold` say the rules as counts, which is how the store keeps every group's
state without a walk (tests/oracles.py walks the checks, and the tests hold the two equal).
"""

from __future__ import annotations

from healthd.model import State, Status

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
