"""Thresholds, freshness and state precedence: pure functions, no event loop."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from healthd.evaluator import evaluate
from healthd.model import CheckState, Outcome, State, Status
from tests.helpers import result
from tests.oracles import aggregate, freshness

OUTCOMES = st.sampled_from(list(Outcome))
STATUSES = st.sampled_from(list(Status))


def run(outcomes: list[Outcome], fail_at: int = 1, ok_at: int = 1) -> list[Status]:
    state = CheckState("c", "tcp", True)
    seen = []
    for outcome in outcomes:
        state = evaluate(state, result("c", outcome, at=0.0), fail_at, ok_at)
        seen.append(state.status)
    return seen


def test_first_result_counts_as_it_is() -> None:
    """With no history, the first result sets the status directly."""
    assert run([Outcome.FAIL], fail_at=3) == [Status.FAIL]
    assert run([Outcome.WARN]) == [Status.WARN]


def test_failure_threshold_needs_consecutive_failures() -> None:
    """A passing check fails only after failure_threshold bad runs in a row."""
    seq = [Outcome.PASS, Outcome.FAIL, Outcome.FAIL, Outcome.PASS, Outcome.FAIL, Outcome.FAIL]
    seq += [Outcome.TIMEOUT]
    assert run(seq, fail_at=3)[-1] is Status.TIMEOUT
    assert run(seq, fail_at=3)[:-1] == [Status.PASS] * 6


def test_success_threshold_needs_consecutive_passes() -> None:
    """A failing check recovers only after success_threshold good runs in a row."""
    seq = [Outcome.FAIL, Outcome.PASS, Outcome.FAIL, Outcome.PASS, Outcome.PASS]
    assert run(seq, ok_at=2) == [Status.FAIL] * 4 + [Status.PASS]


@given(st.lists(OUTCOMES, min_size=1, max_size=40), st.integers(1, 5), st.integers(1, 5))
def test_hysteresis(outcomes: list[Outcome], fail_at: int, ok_at: int) -> None:
    """A status flips between good and failing only after the threshold's run of outcomes."""
    statuses = run(outcomes, fail_at, ok_at)
    for i in range(1, len(outcomes)):
        before, after = statuses[i - 1], statuses[i]
        if not before.failing and after.failing:
            assert all(not o.good for o in outcomes[max(0, i - fail_at + 1) : i + 1])
            assert i + 1 >= fail_at
        if before.failing and not after.failing:
            assert all(o.good for o in outcomes[max(0, i - ok_at + 1) : i + 1])
            assert i + 1 >= ok_at
    # the status always shows the latest outcome once the run is long enough
    tail = fail_at if not outcomes[-1].good else ok_at
    if len(outcomes) >= tail and len({o.good for o in outcomes[-tail:]}) == 1:
        assert statuses[-1] is Status(outcomes[-1].value)


def test_freshness_turns_old_results_unknown() -> None:
    """A result older than max_age reads as unknown; the counted state is untouched."""
    state = evaluate(CheckState("c", "tcp", True), result("c", Outcome.PASS, at=100.0), 1, 1)
    assert freshness(state, 110.0, 30.0).status is Status.PASS
    assert freshness(state, 131.0, 30.0).status is Status.UNKNOWN
    assert state.status is Status.PASS
    assert freshness(CheckState("c", "tcp", True), 0, 1).status is Status.UNKNOWN


def check(status: Status, critical: bool) -> CheckState:
    return CheckState("c", "tcp", critical, status=status)


@given(st.lists(st.tuples(STATUSES, st.booleans()), max_size=12), st.booleans())
def test_state_precedence(checks: list[tuple[Status, bool]], draining: bool) -> None:
    """draining > unhealthy > unknown > degraded > healthy, first rule wins (DESIGN §2)."""
    states = [check(s, c) for s, c in checks]
    got = aggregate(states, draining)
    critical = [s for s, c in checks if c]
    if draining:
        expected = State.DRAINING
    elif any(s.failing for s in critical):
        expected = State.UNHEALTHY
    elif Status.UNKNOWN in critical:
        expected = State.UNKNOWN
    elif any(s is not Status.PASS for s, c in checks if not c) or Status.WARN in critical:
        expected = State.DEGRADED
    else:
        expected = State.HEALTHY
    assert got is expected


def test_noncritical_failure_only_degrades() -> None:
    """A failing non-critical check degrades the group but keeps it ready."""
    assert aggregate([check(Status.PASS, True), check(Status.FAIL, False)], False) is (
        State.DEGRADED
    )
    assert aggregate([], False) is State.HEALTHY
