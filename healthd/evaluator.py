"""Pure: fold a run's outcome into a check's state (reference §2, §13).

Thresholds: a good standing (pass/warn) turns failing only after `failure_threshold`
consecutive bad runs (fail/timeout); a failing one recovers only after
`success_threshold` consecutive good runs. Between pass and warn, and between fail and
timeout, the latest outcome shows at once. What they say is the state's `base`.

On top of that, what readers see (`status`):
- a **flapping** check (flapping.py) is held at `fail`, whatever the thresholds say;
- a **skipped** result (a `depends_on` parent is failing; dependencies.py) shows as
  `skipped` at once and leaves thresholds and flap detection as they were: the check
  did not run, so nothing was learnt about it.

A state whose last result is older than `max_age` is `unknown` when read (the store
expires it), without changing what was counted. `next_delay` says when a background
check runs next (fast and down intervals), before the scheduler's jitter.
"""

from __future__ import annotations

from dataclasses import replace

from healthd.checks.base import SpecBase
from healthd.model import CheckResult, CheckState, Outcome, Status


def initial(spec: SpecBase) -> CheckState:
    """A check's state before its first run (its flap detector fresh)."""
    return CheckState(spec.name, spec.kind, spec.critical, flap=spec.flap_detector())


def evaluate(
    state: CheckState, result: CheckResult, failure_threshold: int, success_threshold: int
) -> CheckState:
    """The state after `result`."""
    if result.skipped:
        return replace(state, status=Status.SKIPPED, last=result)
    good = result.outcome.good
    failures = 0 if good else state.consecutive_failures + 1
    successes = state.consecutive_successes + 1 if good else 0
    current, outcome = state.base, Status(result.outcome.value)
    if current is Status.UNKNOWN:
        base = outcome  # the first result counts as it is
    elif current.failing:
        recovered = good and successes >= success_threshold
        base = outcome if recovered or not good else current
    else:
        tripped = not good and failures >= failure_threshold
        base = outcome if tripped or good else current
    flap = state.flap.observe(result.outcome) if state.flap is not None else None
    return CheckState(  # built directly: dataclasses.replace costs more than the rest here
        state.name,
        state.kind,
        state.critical,
        Status.FAIL if flap is not None and flap.flapping else base,
        result,
        failures,
        successes,
        state.ever_passed or result.outcome is Outcome.PASS,
        base,
        flap,
    )


def next_delay(spec: SpecBase, state: CheckState) -> float:
    """Seconds until `spec`'s next background run after `state`'s last result (no jitter).

    After an outcome that disagrees with the status (a first failure while passing, a
    first pass while failing) `fast_interval`, so thresholds confirm quickly; while the
    check is failing or flapping, `down_interval`; otherwise (skipped included) `interval`.
    """
    last = state.last
    if last is None or last.skipped:
        return spec.interval
    if state.flapping:
        return spec.between_failures
    if last.outcome.good is state.base.failing:
        return spec.after_change
    return spec.between_failures if state.base.failing else spec.interval
