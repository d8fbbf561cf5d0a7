"""DESIGN §14 without etcd: the panic rule, the store's excuses, reports, the view, `fleet:`."""

from __future__ import annotations

import json
from typing import Any

import pytest

from healthd.checks.tcp import TcpSpec
from healthd.config import GroupSettings, parse_settings
from healthd.errors import ConfigError
from healthd.fleet.agent import Fleet
from healthd.fleet.view import Report, Rule, View, quorum
from healthd.groups import HEALTH, READINESS, Membership
from healthd.model import CheckResult, Outcome, Reason, State
from healthd.store import Store
from healthd.testing import ManualClock

SETTLE = 1.5


def db_store(clock: ManualClock) -> tuple[Store, TcpSpec]:
    spec = TcpSpec(name="db", kind="tcp", address="127.0.0.1:9", shared=True, interval="1s",
                   timeout="500ms", max_age="1h")  # fmt: skip
    store = Store(clock)
    store.configure([spec], Membership.of([spec], GroupSettings(), None))
    return store, spec


def run(store: Store, spec: TcpSpec, outcome: Outcome, clock: ManualClock) -> None:
    r = CheckResult("db", "tcp", outcome, Reason.OK, outcome.value, 0.01, clock(), 0.0, 0.5)
    store.record(spec, r)


@pytest.mark.parametrize(
    ("failing", "live", "expected"),
    [(1, 1, False), (1, 2, False), (2, 2, True), (2, 5, False), (3, 5, True), (5, 5, True),
     (2, 4, True), (1, 4, False)],
)  # fmt: skip
def test_quorum_is_at_least_the_threshold_and_never_one_instance_alone(
    failing: int, live: int, expected: bool
) -> None:
    """At 50 %: 3/5 and 2/4 qualify, 2/5 does not, and a lone instance never does."""
    assert quorum(failing, live, 0.5) is expected


def test_a_fresh_failure_settles_then_counts_when_few_see_it() -> None:
    """Younger than `settle`: settling; after it, with 1/5: counted (no excuse)."""
    rule = Rule(0.5, SETTLE)
    assert rule.decide("db", 1, 5, 10.0).rule == "settling"
    assert rule.next_change(10.0) == 10.0 + SETTLE
    assert rule.decide("db", 1, 5, 11.4).rule == "settling"
    assert rule.decide("db", 1, 5, 11.5).rule == "counted"


def test_the_quorum_panics_at_once_and_holds_for_settle_after_it_lapses() -> None:
    """4/5 panics even while settling; at 2/5 it holds for `settle`, then counts."""
    rule = Rule(0.5, SETTLE)
    first = rule.decide("db", 4, 5, 10.0)
    assert (first.rule, first.panic) == ("panic", True)
    assert first.reason == "fleet: 4/5 instances see db failing; staying in rotation"
    assert rule.decide("db", 4, 5, 19.0).panic  # the quorum last held at 19.0
    assert rule.decide("db", 2, 5, 20.0).rule == "holding"
    assert rule.decide("db", 2, 5, 20.4).panic
    assert rule.next_change(20.4) == 19.0 + SETTLE
    assert rule.decide("db", 2, 5, 20.6).rule == "counted"
    rule.forget("db")
    assert rule.decide("db", 1, 5, 30.0).rule == "settling"  # a new failure starts over


def test_everyone_failing_in_one_settle_window_decides_alike() -> None:
    """Five instances whose failures start 0 to 0.9 s apart and publish at once: each one's
    decision after its own settle window is panic, and none is ever `counted` on the way."""
    rules = [Rule(0.5, SETTLE) for _ in range(5)]
    starts = [0.0, 0.2, 0.5, 0.7, 0.9]
    for t in [x / 10 for x in range(0, 40)]:
        seen = sum(s <= t for s in starts)  # how many have published their failure by t
        for rule, start in zip(rules, starts, strict=True):
            if t >= start:
                assert rule.decide("db", seen, 5, t).rule != "counted"
    assert all(r.decide("db", 5, 5, 4.0).rule == "panic" for r in rules)


def test_a_new_shared_failure_keeps_the_weight_it_had_while_it_settles() -> None:
    """Fleet connected: db's first failure leaves readiness healthy (settling), panic makes it
    degraded with the reason in the snapshot, no excuse makes it unhealthy; a pass clears."""
    clock = ManualClock()
    store, spec = db_store(clock)
    store.set_lenient({"db": "fleet: db failing here; settling"})
    run(store, spec, Outcome.PASS, clock)
    assert store.current(READINESS) is State.HEALTHY
    run(store, spec, Outcome.FAIL, clock)
    assert store.current(READINESS) is State.HEALTHY
    assert store.snapshot(READINESS).fleet == {"db": "fleet: db failing here; settling"}
    store.excuse("db", "fleet: 3/5 instances see db failing; staying in rotation", panic=True)
    assert store.current(READINESS) is State.DEGRADED
    assert store.snapshot(HEALTH).fleet["db"].startswith("fleet: 3/5")
    run(store, spec, Outcome.TIMEOUT, clock)  # still failing: the excuse stays
    assert store.current(READINESS) is State.DEGRADED
    store.excuse("db", None)
    assert store.current(READINESS) is State.UNHEALTHY
    assert store.snapshot(READINESS).fleet == {}
    run(store, spec, Outcome.PASS, clock)
    assert store.current(READINESS) is State.HEALTHY


def test_without_a_fleet_a_shared_failure_counts_at_once() -> None:
    """Nothing lenient (no fleet, or etcd unreachable): exactly the local semantics."""
    clock = ManualClock()
    store, spec = db_store(clock)
    run(store, spec, Outcome.PASS, clock)
    run(store, spec, Outcome.FAIL, clock)
    assert store.current(READINESS) is State.UNHEALTHY
    store.set_lenient({"db": "settling"})
    store.excuse("db", "panic", panic=True)
    assert store.current(READINESS) is State.DEGRADED
    store.set_lenient({})  # etcd lost: every excuse withdrawn at once
    assert store.current(READINESS) is State.UNHEALTHY


def test_a_first_result_failing_keeps_a_starting_instance_unknown_while_it_settles() -> None:
    """Settling keeps the weight from before: unknown at start stays unknown (503), never 200."""
    clock = ManualClock()
    store, spec = db_store(clock)
    store.set_lenient({"db": "settling"})
    run(store, spec, Outcome.FAIL, clock)
    assert store.current(READINESS) is State.UNKNOWN


def test_reports_round_trip_and_the_view_counts_live_instances() -> None:
    """What one instance publishes another reads back; the view counts itself with its own facts."""
    prefix = "/healthd/orders/"
    a = Report("a", {"readiness": "degraded"}, False, frozenset({"db"}), 1.0)
    assert Report.decode("a", a.encode()) == a
    assert Report.decode("x", "not json") is None
    view = View(prefix)
    assert view.apply("put", prefix + "instances/a", a.encode())
    b = Report("b", {"readiness": "healthy"}, False, frozenset(), 1.0)
    view.apply("put", prefix + "instances/b", b.encode())
    view.apply("put", prefix + "slots/0", "a")
    me = Report("c", {}, False, frozenset({"db"}))
    assert view.counts("db", me) == (2, 3)
    assert view.holders() == ["a"]
    assert not view.apply("put", prefix + "instances/b", b.encode())  # nothing new
    assert view.apply("delete", prefix + "instances/a", "")
    assert view.counts("db", me) == (1, 2)
    assert view.apply("delete", prefix + "slots/0", "")
    assert not view.apply("put", "/healthd/other/instances/z", a.encode())


def test_fleet_settings_hold_credentials_as_secrets() -> None:
    """`user:password@` in an endpoint: out of repr, dumps and endpoints; kept for auth."""
    s = parse_settings(
        'fleet: {etcd: ["http://root:s3cr3t@etcd:2379", "https://e2"], service: orders, '
        "instance: pod-1, ttl: 3s}\n"
    )
    assert s.fleet is not None
    assert "s3cr3t" not in repr(s) + s.model_dump_json() + json.dumps(s.fleet.endpoints)
    assert s.fleet.endpoints == ["http://etcd:2379", "https://e2:2379"]
    creds = s.fleet.credentials
    assert creds is not None
    assert (creds[0], creds[1].get_secret_value()) == ("root", "s3cr3t")
    assert s.fleet.settle_window == 1.5
    assert s.fleet.panic_threshold == 0.5


def test_the_instance_defaults_to_the_pod_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """`instance` unset: ${POD_NAME}, else ${HOSTNAME}, else the host name."""
    monkeypatch.setenv("POD_NAME", "orders-7d9f-abcde")
    s = parse_settings("fleet: {etcd: [http://etcd:2379], service: orders}\n")
    assert s.fleet is not None
    assert s.fleet.instance == "orders-7d9f-abcde"


@pytest.mark.parametrize(
    ("fleet", "message"),
    [
        ("{etcd: [http://e:2379], service: o, ttl: 1s}", "fleet.ttl: must be at least 2s"),
        ("{etcd: [ftp://e], service: o}", "fleet.etcd: endpoint 1 must be http://host:port"),
        ("{etcd: [http://e:2379], service: o, ttl: 4s, settle: 4s}", "fleet.settle: must be"),
        ("{etcd: [http://e:2379], service: O}", "fleet.service: "),
        ("{etcd: [], service: o}", "fleet.etcd: "),
        ("{etcd: [http://e:2379], service: o, panic_threshold: 0%}", "fleet.panic_threshold:"),
    ],
)
def test_bad_fleet_settings_are_one_line_errors(fleet: str, message: str) -> None:
    """Each names `fleet.<key>` and the line; none is a traceback."""
    with pytest.raises(ConfigError) as caught:
        parse_settings(f"fleet: {fleet}\n", "h.yaml")
    assert str(caught.value).startswith("h.yaml:1: "), caught.value
    assert message in str(caught.value)


def test_the_agent_walks_the_specs_once_per_configuration() -> None:
    """Which checks are shared is found once per configure, not once per transition: at
    1,000 checks a walk of every spec on each reaction would be O(N) per result."""
    clock = ManualClock()
    specs = [TcpSpec(name=f"c{i}", kind="tcp", address="127.0.0.1:9", shared=i % 10 == 0)
             for i in range(1_000)]  # fmt: skip
    store = Store(clock)
    store.configure(specs, Membership.of(specs, GroupSettings(), None))
    walks = 0
    walk = store.specs

    def counted() -> list[Any]:
        nonlocal walks
        walks += 1
        return walk()

    store.specs = counted  # type: ignore[method-assign]
    settings = parse_settings("fleet: {etcd: [http://e:2379], service: o, instance: i}\n")
    assert settings.fleet is not None
    fleet = Fleet(settings.fleet, store)
    for _ in range(100):
        assert len(fleet.shared()) == 100
    store.configure(specs[:10], Membership.of(specs[:10], GroupSettings(), None))
    assert fleet.shared() == ("c0",)  # a reload is seen at once
    assert walks == 0  # the store found them while it configured
