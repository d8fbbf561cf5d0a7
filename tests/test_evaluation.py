"""Evaluation beyond thresholds (DESIGN §13), the pure parts: flap detection, the flapping
hold, skipped results and their root cause, next delays, budget-aware retries. Tables of
outcomes in, statuses, flags and delays out; no sleeping (ManualClock, FakeCheck)."""

from __future__ import annotations

from typing import Any

import pytest

from healthd import dependencies, runner
from healthd.checks.base import SpecBase
from healthd.deadline import Deadline
from healthd.durations import parse_percent
from healthd.errors import CheckFailed
from healthd.evaluator import evaluate, initial, next_delay
from healthd.flapping import Flapping, weight
from healthd.model import CheckResult, CheckState, Outcome, Reason, Status
from healthd.testing import FakeCheck, ManualClock
from tests.helpers import result, settings

P, W, F, T = Outcome.PASS, Outcome.WARN, Outcome.FAIL, Outcome.TIMEOUT


def spec(**keys: Any) -> SpecBase:
    s: SpecBase = settings([{"name": "c", **keys}]).checks[0]
    return s


def fold(s: SpecBase, outcomes: list[Outcome]) -> list[CheckState]:
    state, seen = initial(s), []
    for outcome in outcomes:
        state = evaluate(state, result("c", outcome), s.failure_threshold, s.success_threshold)
        seen.append(state)
    return seen


TOGGLE = [P, F] * 10


# --- the flap detector --------------------------------------------------------------------------


def test_weights_run_from_oldest_to_newest() -> None:
    """A change weighs 1.2 when newest and 0.8 when oldest, linearly between (Nagios)."""
    assert weight(0, 20) == pytest.approx(1.2)
    assert weight(19, 20) == pytest.approx(0.8)
    assert sum(weight(i, 20) for i in range(20)) == pytest.approx(20)


@pytest.mark.parametrize(
    ("outcomes", "percent", "flapping"),
    [
        ([P] * 30, 0.0, False),
        ([P, W] * 15, 0.0, False),  # pass and warn are both good: no change
        ([F, T] * 15, 0.0, False),  # fail and timeout are both bad: no change
        ([P, F] * 15 + [P], 100.0, True),  # a change on every run of the window
        ([P] * 20 + [F], 6.0, False),  # one change, the newest: 1.2 / 20
        ([P] * 19 + [F] + [P] * 19, 8.1, False),  # two changes at the far end: 0.82 + 0.8
        (TOGGLE[:9], 45.1, False),  # toggling: 8 changes are not enough yet
        (TOGGLE[:10], 50.2, True),  # the 9th change crosses 50%: within the window
    ],
)
def test_weighted_percent(outcomes: list[Outcome], percent: float, flapping: bool) -> None:
    """The weighted percent of changes over the window, and whether it crossed `high`."""
    detector = Flapping(20, 0.5, 0.25)
    for outcome in outcomes:
        detector = detector.observe(outcome)
    assert detector.percent == pytest.approx(percent, abs=0.05)
    assert detector.flapping is flapping


@pytest.mark.parametrize(
    "runs",
    [
        "pfpfp" + "f" * 11 + "pfpfp",  # 5 changes at each end of the window: exactly 50 %
        "fpppfpfppppppfpppfppf",  # exactly 50 % too, summed in an order floats round up
    ],
)
def test_exactly_high_does_not_start_flapping(runs: str) -> None:
    """`high` is a bound to pass, not to reach: a window at exactly 50.0 % is not flapping
    (and reads 50.0, whatever order the float sum took); one change more starts it."""
    detector = Flapping(20, 0.5, 0.25)
    for run in runs:
        detector = detector.observe(P if run == "p" else F)
    assert detector.percent == 50.0
    assert not detector.flapping
    assert detector.observe(P if runs[-1] == "f" else F).flapping


def test_hysteresis_stops_only_below_low() -> None:
    """Once flapping, it stays so until the figure falls below `low`, not `high`."""
    detector = Flapping(20, 0.5, 0.25)
    for outcome in [P, F] * 10:
        detector = detector.observe(outcome)
    flags = []
    for _ in range(20):
        detector = detector.observe(P)
        flags.append((round(detector.percent, 1), detector.flapping))
    assert flags[9] == (49.8, True)  # below high, above low: still flapping
    assert flags[14] == (25.6, True)
    assert flags[15] == (21.1, False)  # below low: stopped, 16 steady runs after
    assert not any(f for _, f in flags[15:])


def test_detector_rejects_bad_settings() -> None:
    """A window below 2, or low not below high, is refused."""
    with pytest.raises(ValueError, match="window"):
        Flapping(1)
    with pytest.raises(ValueError, match="low"):
        Flapping(20, 0.3, 0.3)


@pytest.mark.parametrize(("text", "value"), [("50%", 0.5), ("12.5%", 0.125), ("0%", 0.0)])
def test_parse_percent(text: str, value: float) -> None:
    """Percentages are strings with their sign, as durations are strings with a unit."""
    assert parse_percent(text) == value


@pytest.mark.parametrize("text", ["50", "%", "-5%", "150%", "5 0%", "half"])
def test_parse_percent_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"percentage|above 100%"):
        parse_percent(text)


# --- statuses: thresholds, the flapping hold ---------------------------------------------------


def test_flapping_holds_status_at_fail() -> None:
    """While flapping the status is `fail` whatever the thresholds say; after, theirs again."""
    s = spec(flapping={"window": 10, "high": "50%", "low": "25%"})
    states = fold(s, [P, F] * 5 + [P] * 12)
    statuses = [st.status for st in states]
    flags = [st.flapping for st in states]
    assert statuses[:5] == [Status.PASS, Status.FAIL] * 2 + [Status.PASS]
    assert flags.index(True) == 5  # the 5th change: 55.6% > 50%
    assert all(st.status is Status.FAIL for st in states if st.flapping)
    assert states[9].base is Status.FAIL
    assert states[10].base is Status.PASS
    stop = flags.index(False, 5)
    assert stop == 18  # 9 steady passes bring it under 25%
    assert statuses[stop:] == [Status.PASS] * (len(states) - stop)


def test_flapping_off_never_holds() -> None:
    """`flapping: off`: no detector, statuses follow the thresholds alone."""
    s = spec(flapping="off")
    states = fold(s, [P, F] * 15)
    assert initial(s).flap is None
    assert [st.status for st in states] == [Status.PASS, Status.FAIL] * 15
    assert not any(st.flapping for st in states)


def test_thresholds_still_count_while_flapping() -> None:
    """The base status keeps following the thresholds under the hold."""
    s = spec(failure_threshold=2, flapping={"window": 4, "high": "50%", "low": "25%"})
    states = fold(s, [P, F, P, F, F])
    assert states[3].flapping
    assert states[3].base is Status.PASS
    assert states[4].base is Status.FAIL


# --- skipped --------------------------------------------------------------------------------------


def parent(status: Status, reason: Reason = Reason.TIMEOUT, name: str = "db") -> CheckState:
    last = CheckResult(name, "tcp", Outcome.TIMEOUT, reason, "timeout after 1s", 1, 0, 0, 1)
    return CheckState(name, "tcp", True, status=status, base=status, last=last)


def test_skipped_result_names_the_root_cause() -> None:
    """`skipped: depends on db (timeout)`; down a chain every level names the root."""
    db = parent(Status.TIMEOUT)
    skip = dependencies.skipped("api", "http", db, 5.0, 6.0, 1.0)
    assert (skip.message, skip.attempts, skip.skipped) == (
        "skipped: depends on db (timeout)",
        0,
        True,
    )
    api = evaluate(CheckState("api", "http", True), skip, 1, 1)
    assert api.status is Status.SKIPPED
    orders = dependencies.skipped("orders", "http", api, 5.0, 6.0, 1.0)
    assert orders.message == "skipped: depends on db (timeout)"


def test_flapping_parent_is_the_reason() -> None:
    """A parent held at fail by flapping blocks, and says so."""
    flap = Flapping(4, 0.5, 0.25)
    for outcome in [P, F, P, F]:
        flap = flap.observe(outcome)
    db = CheckState("db", "tcp", True, status=Status.FAIL, last=result("c", P), flap=flap)
    assert dependencies.cause(db) == "skipped: depends on db (flapping)"


@pytest.mark.parametrize(
    ("statuses", "blocker"),
    [
        ({"a": Status.PASS, "b": Status.WARN}, None),
        ({"a": Status.UNKNOWN, "b": Status.PASS}, None),  # no result yet: nothing says it is down
        ({"a": Status.PASS, "b": Status.FAIL}, "b"),
        ({"a": Status.TIMEOUT, "b": Status.FAIL}, "a"),
        ({"a": Status.SKIPPED, "b": Status.PASS}, "a"),
    ],
)
def test_blocking_parent(statuses: dict[str, Status], blocker: str | None) -> None:
    """The first failing (or skipped) parent blocks; passing, warning and unknown ones do not."""
    states = {n: CheckState(n, "tcp", True, status=s) for n, s in statuses.items()}
    found = dependencies.blocking(["a", "b"], states.get)
    assert (found.name if found else None) == blocker


def test_skipped_leaves_thresholds_and_flapping_alone() -> None:
    """A skip is not a run: counts, base and the flap detector stay; the status shows it."""
    s = spec(failure_threshold=3)
    before = fold(s, [P, F, F])[-1]
    after = evaluate(before, dependencies.skipped("c", "tcp", parent(Status.FAIL), 0, 0, 1), 3, 1)
    assert after.status is Status.SKIPPED
    assert (after.base, after.consecutive_failures, after.flap) == (
        before.base, before.consecutive_failures, before.flap,
    )  # fmt: skip
    assert evaluate(after, result("c", F), 3, 1).status is Status.FAIL  # the third failure trips


class Node:
    def __init__(self, name: str, *depends_on: str) -> None:
        self.name, self.depends_on = name, list(depends_on)


@pytest.mark.parametrize(
    ("nodes", "expected"),
    [
        ([Node("a"), Node("b", "a"), Node("c", "a", "b")], []),
        ([Node("a", "x")], ["checks[0].depends_on[0]: unknown check 'x'"]),
        ([Node("a", "a")], ["checks[0].depends_on[0]: a cycle: a → a"]),
        (
            [Node("a", "b"), Node("b", "c"), Node("c", "a"), Node("d", "c")],
            ["checks[0].depends_on[0]: a cycle: a → b → c → a"],
        ),
        (
            [Node("a", "b"), Node("b", "a"), Node("c", "d"), Node("d", "c")],
            [
                "checks[0].depends_on[0]: a cycle: a → b → a",
                "checks[2].depends_on[0]: a cycle: c → d → c",
            ],
        ),
    ],
)
def test_graph_problems(nodes: list[Node], expected: list[str]) -> None:
    """Unknown names and cycles, each located at a `depends_on` entry."""
    assert dependencies.problems(nodes) == expected


def test_dependents() -> None:
    assert dependencies.dependents([Node("a"), Node("b", "a"), Node("c", "a", "b")]) == {
        "a": ("b", "c"),
        "b": ("c",),
    }


# --- next delays ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcomes", "delays"),
    [
        # pass agrees: interval; a first failure under failure_threshold 2: fast; confirmed:
        # down; a first pass while failing: fast; recovered: interval again.
        ([P, F, F, F, P, P, P], [10, 1, 30, 30, 1, 10, 10]),
        ([P, W, P], [10, 10, 10]),
        ([T, T, P, F], [30, 30, 1, 30]),  # the first result counts as it is; P alone: fast
    ],
)
def test_next_delay(outcomes: list[Outcome], delays: list[float]) -> None:
    """fast_interval after an outcome disagreeing with the status, down_interval while failing."""
    s = spec(interval="10s", timeout="500ms", fast_interval="1s", down_interval="30s",
             flapping="off", failure_threshold=2, success_threshold=2)  # fmt: skip
    assert [next_delay(s, st) for st in fold(s, outcomes)] == delays


def test_next_delay_defaults_to_interval() -> None:
    """Without fast/down intervals every delay is `interval`."""
    s = spec(interval="10s", failure_threshold=2, flapping="off")
    assert {next_delay(s, st) for st in fold(s, [P, F, F, P, F])} == {10}


def test_next_delay_while_flapping_and_skipped() -> None:
    """Flapping runs are down_interval apart; a skipped check waits its interval (or a wake)."""
    s = spec(interval="10s", timeout="500ms", fast_interval="1s", down_interval="30s",
             flapping={"window": 4, "high": "50%", "low": "25%"})  # fmt: skip
    states = fold(s, [P, F, P, F, P])
    assert states[-1].flapping
    assert next_delay(s, states[-1]) == 30
    skipped = evaluate(
        states[-1], dependencies.skipped("c", "tcp", parent(Status.FAIL), 0, 0, 1), 1, 1
    )
    assert next_delay(s, skipped) == 10


# --- retries (runner) with a clock moved by hand -----------------------------------------------


async def attempt_run(
    check: FakeCheck, clock: ManualClock, slept: list[float], **keys: Any
) -> CheckResult:
    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)

    s = spec(**keys)
    return await runner.run(s, check, Deadline.after(s.timeout, clock), sleep=sleep)


REFUSED = ConnectionRefusedError()


@pytest.mark.parametrize(
    ("script", "keys", "attempts", "outcome"),
    [
        ([REFUSED, P], {"retries": 2}, 2, P),
        ([ConnectionResetError("reset"), P], {"retries": 1}, 2, P),
        ([OSError("dns"), P], {"retries": 1}, 1, F),  # not a fast failure we know: no retry
        ([REFUSED, REFUSED, REFUSED, P], {"retries": 2}, 3, F),  # retries exhausted
        ([REFUSED, P], {}, 1, F),  # retries: 0 by default
        ([T, P], {"retries": 3}, 1, T),  # never after a timeout
        ([CheckFailed(Reason.AUTH_FAILED, "bad password"), P], {"retries": 3}, 1, F),
    ],
)
async def test_retries_after_fast_failures_only(
    script: list[Any], keys: dict[str, Any], attempts: int, outcome: Outcome
) -> None:
    """Refused, reset and dns failures are tried again; a timeout or a bad answer is not."""
    clock = ManualClock()
    check = FakeCheck(script, clock=clock, cost=0.001)
    slept: list[float] = []
    got = await attempt_run(check, clock, slept, **keys)
    assert (got.attempts, got.outcome, check.calls) == (attempts, outcome, attempts)
    assert slept == [0.05] * (attempts - 1)  # retry_delay: 50ms by default


async def test_retry_only_while_the_budget_allows() -> None:
    """An attempt starts only if the time left exceeds retry_delay plus the last attempt's
    duration: 300ms attempts in a 1s budget with 100ms pauses make two attempts, not three."""
    clock = ManualClock()
    check = FakeCheck([REFUSED], clock=clock, cost=0.3)
    got = await attempt_run(check, clock, [], retries=5, retry_delay="100ms", timeout="1s")
    # t=0 → 0.3 (left 0.7 > 0.4) → pause → 0.4 → 0.7 (left 0.3 < 0.4): stop
    assert got.attempts == 2
    assert got.duration == pytest.approx(0.7)
    assert got.duration <= 1.0


async def test_dns_failures_are_retried() -> None:
    """A name that did not resolve (socket.gaierror) is a fast failure."""
    import socket

    clock = ManualClock()
    check = FakeCheck([socket.gaierror(-2, "Name or service not known"), P], clock=clock)
    got = await attempt_run(check, clock, [], retries=1)
    assert (got.attempts, got.outcome) == (2, P)


def test_defaults_carry_the_new_keys() -> None:
    """`defaults:` sets retries, retry_delay, intervals and flapping for every check."""
    s = settings(
        [{"name": "a"}, {"name": "b", "flapping": {"window": 5}}],
        defaults={"retries": 2, "retry_delay": "10ms", "interval": "5s", "down_interval": "20s",
                  "flapping": "off"},
    )  # fmt: skip
    a, b = s.checks
    assert (a.retries, a.retry_delay, a.between_failures, a.flapping) == (2, 0.01, 20.0, "off")
    assert initial(b).flap == Flapping(5, 0.5, 0.25)


def test_max_age_covers_down_interval() -> None:
    """A failing check's result must not go stale between down_interval runs."""
    assert spec(interval="10s", down_interval="60s").stale_after == 180.0
    assert spec(interval="10s").stale_after == 30.0
