"""The store: tallies against a full walk, O(1) recording by counted work, expiry, events."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthd import store as store_module
from healthd.checks.tcp import TcpSpec
from healthd.config import GroupSettings
from healthd.evaluator import evaluate
from healthd.groups import GROUPS, HEALTH, LIVENESS, READINESS, STARTUP, Membership
from healthd.model import CheckResult, CheckState, Outcome, Reason, State, Status
from healthd.store import Store
from healthd.testing import ManualClock
from tests.helpers import result
from tests.oracles import aggregate, freshness

MAX_AGE = 3.0


def specs(flags: list[tuple[bool, bool, bool]]) -> list[TcpSpec]:
    """One tcp spec per (critical, in readiness, in liveness) triple."""
    return [
        TcpSpec(name=f"c{i}", kind="tcp", address="127.0.0.1:9", critical=critical,
                interval="1s", timeout="500ms", max_age=f"{MAX_AGE}s")
        for i, (critical, _, _) in enumerate(flags)
    ]  # fmt: skip


def membership(all_specs: list[TcpSpec], flags: list[tuple[bool, bool, bool]]) -> Membership:
    ready = [s.name for s, (_, r, _) in zip(all_specs, flags, strict=True) if r] or ["none"]
    live = [s.name for s, (_, _, lv) in zip(all_specs, flags, strict=True) if lv] or ["none"]
    return Membership.of(all_specs, GroupSettings(include=ready), GroupSettings(include=live))


class Naive:
    """The reference: every group's state by a full walk, as the engine once did."""

    def __init__(self, all_specs: list[TcpSpec], members: Membership) -> None:
        self.states = {s.name: CheckState(s.name, s.kind, s.critical) for s in all_specs}
        self.members, self.draining = members.members, False
        self.started = not self.members[STARTUP]  # nothing to wait for: started (vacuously)

    def record(self, r: CheckResult) -> None:
        self.states[r.name] = evaluate(self.states[r.name], r, 1, 1)
        self.started = self.started or all(
            self.states[n].ever_passed for n in self.members[STARTUP]
        )

    def group(self, group: str, now: float) -> State:
        seen = [freshness(self.states[n], now, MAX_AGE) for n in self.members[group]]
        if group == STARTUP:  # a latch; until it closes, unhealthy while a member fails
            pending = aggregate(seen, False)
            pending = State.UNHEALTHY if pending is State.UNHEALTHY else State.UNKNOWN
            return State.HEALTHY if self.started else pending
        return aggregate(seen, self.draining and group != LIVENESS)


Step = tuple[str, Any]
STEPS = st.one_of(
    st.tuples(st.just("record"), st.tuples(st.integers(0, 7), st.sampled_from(list(Outcome)))),
    st.tuples(st.just("drain"), st.booleans()),
    st.tuples(st.just("wait"), st.sampled_from([0.5, 1.0, 2.0, 3.5])),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.booleans(), st.booleans()), min_size=1, max_size=8),
    st.lists(STEPS, max_size=60),
)
def test_tallies_agree_with_a_full_walk(
    flags: list[tuple[bool, bool, bool]], steps: list[Step]
) -> None:
    """For any results, drain flips and waits, every group's state from the tallies is the
    state a walk over its members gives with the aggregate rules (freshness included)."""
    clock = ManualClock()
    all_specs = specs(flags)
    members = membership(all_specs, flags)
    store, naive = Store(clock), Naive(all_specs, members)
    store.configure(all_specs, members)
    for kind, arg in steps:
        if kind == "record":
            index, outcome = arg
            spec = all_specs[index % len(all_specs)]
            r = result(spec.name, outcome, at=clock())
            store.record(spec, r)
            naive.record(r)
        elif kind == "drain":
            store.set_draining(arg)
            naive.draining = arg
        else:
            clock.advance(arg)
        for group in GROUPS:
            assert store.current(group) is naive.group(group, clock()), (group, kind, arg)
        views = store.snapshot(HEALTH).checks
        assert [v.status for v in views] == [
            freshness(naive.states[s.name], clock(), MAX_AGE).status for s in all_specs
        ]


class Counting(dict[str, Any]):
    """A dict that counts how often a value is looked up."""

    reads = 0

    def get(self, key: str, default: Any = None) -> Any:
        Counting.reads += 1
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        Counting.reads += 1
        return super().__getitem__(key)


@pytest.fixture
def work(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts the store's aggregation work: weigh() and fold() calls, slot lookups."""
    calls = {"weigh": 0, "fold": 0}

    def counted(name: str) -> Any:
        real = getattr(store_module, name)

        def wrapper(*args: Any) -> Any:
            calls[name] += 1
            return real(*args)

        return wrapper

    monkeypatch.setattr(store_module, "weigh", counted("weigh"))
    monkeypatch.setattr(store_module, "fold", counted("fold"))
    return calls


def recording_work(n: int, calls: dict[str, int]) -> tuple[int, int, int]:
    """The work to record a failing result for one check, in a store of `n` checks."""
    flags = [(True, True, i == 0) for i in range(n)]
    all_specs = specs(flags)
    store = Store(ManualClock())
    store.configure(all_specs, membership(all_specs, flags))
    for spec in all_specs:
        store.record(spec, result(spec.name, Outcome.PASS, at=store.clock()))
    store._slots = Counting(store._slots)
    calls.update(weigh=0, fold=0)
    Counting.reads = 0
    store.record(all_specs[n // 2], result(all_specs[n // 2].name, Outcome.FAIL, at=store.clock()))
    assert store.current(READINESS) is State.UNHEALTHY
    return calls["weigh"], calls["fold"], Counting.reads


def test_recording_one_result_does_work_independent_of_n(work: dict[str, int]) -> None:
    """Recording a result re-weighs only that check and folds each group once: the same
    count of operations for 10 checks as for 5,000 (no walk over the members)."""
    small, large = recording_work(10, work), recording_work(5000, work)
    assert small == large
    weighs, folds, reads = large
    assert weighs == 1  # the one check whose status changed
    assert folds == len(GROUPS) - 1  # one fold per tallied group (startup is a latch)
    assert reads <= 2


def test_snapshot_is_built_once_per_generation() -> None:
    """Readers of one generation share one snapshot object; a new result makes a new one."""
    clock = ManualClock()
    flags = [(True, True, False)] * 3
    all_specs = specs(flags)
    store = Store(clock)
    store.configure(all_specs, membership(all_specs, flags))
    first = store.snapshot(READINESS)
    assert store.snapshot(READINESS) is first
    store.record(all_specs[0], result("c0", Outcome.PASS, at=clock()))
    second = store.snapshot(READINESS)
    assert second is not first
    assert second.generation > first.generation
    assert store.snapshot(READINESS) is second


def test_a_stale_result_turns_unknown_and_is_announced() -> None:
    """Past max_age the check reads unknown (its counted state kept), and observers hear it."""
    clock = ManualClock()
    flags = [(True, True, False)]
    all_specs = specs(flags)
    store = Store(clock)
    store.configure(all_specs, membership(all_specs, flags))
    store.record(all_specs[0], result("c0", Outcome.PASS, at=clock()))
    assert store.current(READINESS) is State.HEALTHY
    clock.advance(MAX_AGE)
    assert store.current(READINESS) is State.HEALTHY  # 3.01 s old only just now
    clock.advance(0.02)
    assert store.current(READINESS) is State.UNKNOWN
    view = store.check("c0")
    assert view is not None
    assert view.status is Status.UNKNOWN
    assert view.consecutive_successes == 1


async def test_changes_yield_numbered_transitions_and_reset_when_behind() -> None:
    """changes() yields each transition once with increasing ids; a reader asking for ids
    the ring dropped gets a reset event first."""
    clock = ManualClock()
    flags = [(True, True, False)]
    all_specs = specs(flags)
    store = Store(clock)
    store.configure(all_specs, membership(all_specs, flags))
    stream = store.changes()
    reader = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    store.record(all_specs[0], result("c0", Outcome.FAIL, at=clock()))
    event = await reader
    assert (event.kind, event.name, event.state, event.previous) == (
        "check",
        "c0",
        "fail",
        "unknown",
    )
    rest = [await anext(stream) for _ in range(4)]  # every group's first announcement
    assert [e.id for e in rest] == [event.id + i for i in range(1, 5)]
    assert [(e.kind, e.name, e.state) for e in rest] == [
        ("group", READINESS, "unhealthy"),
        ("group", LIVENESS, "healthy"),
        ("group", STARTUP, "unhealthy"),  # not started, and its critical member fails
        ("group", HEALTH, "unhealthy"),
    ]
    stale = store.changes(since=-5)
    assert (await anext(stale)).kind == "reset"


async def test_a_mass_failure_of_every_check_fits_the_ring() -> None:
    """1,500 checks failing in one loop iteration (more than the 1,000-event minimum): a
    reader that was waiting gets every event, no reset (the ring holds two per check)."""
    clock = ManualClock()
    flags = [(True, True, False)] * 1500
    all_specs = specs(flags)
    store = Store(clock)
    store.configure(all_specs, membership(all_specs, flags))
    assert store.ring.size == 3000
    start = store.ring.last_id
    for spec in all_specs:  # no await in between: one burst
        store.record(spec, result(spec.name, Outcome.FAIL, at=clock()))
    events = [event async for event in _take(store.changes(start), store.ring.last_id - start)]
    assert [e.kind for e in events].count("reset") == 0
    assert sum(e.kind == "check" for e in events) == 1500


async def _take(stream: Any, n: int) -> Any:
    for _ in range(n):
        yield await anext(stream)


def test_history_entries_are_not_walked_by_the_garbage_collector() -> None:
    """The store keeps `history` results per check (500,000 at 5,000 checks) as tuples the
    collector untracks: a full collection no longer walks them (counted, not timed)."""
    import gc

    from healthd.model import CheckResult, Outcome
    from tests.helpers import settings as make_settings

    s = make_settings([{"name": f"c{i}"} for i in range(50)])
    store = Store()
    store.configure(s.all_checks, s.membership())
    for spec in s.checks:
        for i in range(20):
            result = CheckResult(spec.name, "tcp", Outcome.PASS, Reason.OK, f"run {i}",
                                 0.001, float(i), 1000.0 + i, 1.0)  # fmt: skip
            store.record(spec, result)
    gc.collect()
    kept = [entry for spec in s.checks for entry in store._slots[spec.name].history]
    assert len(kept) == 50 * 20
    assert not any(gc.is_tracked(entry) for entry in kept)
    assert [r.message for r in store.history("c0", 2)] == ["run 18", "run 19"]
    assert store.history("c0", 1)[0].outcome is Outcome.PASS
