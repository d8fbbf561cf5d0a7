"""Pure: fold a run's outcome into a check's state through the thresholds (DESIGN §2).

A good standing (pass/warn) turns failing only after `failure_threshold` consecutive
bad runs (fail/timeout); a failing one recovers only after `success_threshold`
consecutive good runs. Between pass and warn, and between fail and timeout, the
latest outcome shows at once. A state whose last result is older than `max_age` is
`unknown` when read (`freshness`), without changing what was counted.
"""

from __future__ import annotations

from dataclasses import replace

from healthd.model import CheckResult, CheckState, Outcome, Status


def evaluate(
    state: CheckState, result: CheckResult, failure_threshold: int, success_threshold: int
) -> CheckState:
    """The state after `result`."""
    good = result.outcome.good
    failures = 0 if good else state.consecutive_failures + 1
    successes = state.consecutive_successes + 1 if good else 0
    current = state.status
    if current is Status.UNKNOWN and state.last is None:
        status = Status(result.outcome.value)  # the first result counts as it is
    elif current.failing or current is Status.UNKNOWN:
        recovered = good and successes >= success_threshold
        status = Status(result.outcome.value) if recovered or not good else current
    else:
        tripped = not good and failures >= failure_threshold
        status = Status(result.outcome.value) if tripped or good else current
    return CheckState(  # built directly: dataclasses.replace costs more than the rest here
        state.name,
        state.kind,
        state.critical,
        status,
        result,
        failures,
        successes,
        state.ever_passed or result.outcome is Outcome.PASS,
    )


def freshness(state: CheckState, now: float, max_age: float) -> CheckState:
    """`state` as seen at monotonic time `now`: `unknown` when its last result is too old."""
    last = state.last
    if last is None or now - (last.started_at + last.duration) <= max_age:
        return state
    return replace(state, status=Status.UNKNOWN)
