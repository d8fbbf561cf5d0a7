"""Evaluation beyond thresholds, wired into the store, runs and scheduler (DESIGN §13):
skipped children and their cascade, the scheduler asking next_delay, and what views,
metrics and logs show. FakeChecks; runs driven by the test unless a test says otherwise."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from healthd.deadline import Deadline
from healthd.health import Health
from healthd.model import CheckState, Outcome, State, Status
from healthd.observers import setup
from healthd.observers.log import TransitionLog
from healthd.testing import FakeCheck
from healthd.web import render
from tests.helpers import engine_with, run_now, settings

P, F, T = Outcome.PASS, Outcome.FAIL, Outcome.TIMEOUT


def state(engine: Health, name: str) -> CheckState:
    found = engine.store.check(name)
    assert found is not None
    return found


def family(critical: bool = True, **child: Any) -> list[dict[str, Any]]:
    return [
        {"name": "db", "mode": "on_demand"},
        {"name": "api", "depends_on": ["db"], "critical": critical, **child},
        {"name": "orders", "depends_on": ["api"], "critical": critical},
    ]


async def settle(engine: Health) -> None:
    """Until the runs the engine started on its own (a cascade) have recorded."""
    for _ in range(100):
        if not engine.runs.inflight():
            return
        await asyncio.sleep(0.001)


async def test_child_of_a_failing_parent_is_skipped_not_run() -> None:
    """While db fails, api and orders are not run: skipped, naming db as the root cause."""
    fakes = {"db": FakeCheck([T]), "api": FakeCheck(), "orders": FakeCheck()}
    engine = engine_with(fakes, settings(family()))
    await run_now(engine, "db")
    await run_now(engine, "api")
    await run_now(engine, "orders")
    snapshot = await engine.evaluate("readiness", Deadline.after(1.0))
    assert fakes["api"].calls == fakes["orders"].calls == 0
    by_name = {c.name: c for c in snapshot.checks}
    assert by_name["api"].status is Status.SKIPPED
    assert by_name["orders"].status is Status.SKIPPED
    text = render.render_verbose(snapshot, "readyz", False, details=True)
    assert "[-]api skipped: depends on db (timeout)" in text
    assert "[-]orders skipped: depends on db (timeout)" in text
    body = json.loads(render.Renderer().json(snapshot, details=True))
    assert body["checks"]["orders"]["status"] == "skipped"
    assert body["checks"]["orders"]["attempts"] == 0
    assert snapshot.state is State.UNHEALTHY


@pytest.mark.parametrize(("critical", "state"), [(True, State.UNHEALTHY), (False, State.DEGRADED)])
async def test_skipped_counts_as_failing_with_its_own_critical(
    critical: bool, state: State
) -> None:
    """A skipped check weighs on its group as failing, critical or not as it says itself."""
    s = settings(family(critical), groups={"readiness": {"include": ["api", "orders"]}})
    fakes = {"db": FakeCheck([F]), "api": FakeCheck(), "orders": FakeCheck()}
    engine = engine_with(fakes, s)
    await run_now(engine, "db")
    snapshot = await engine.evaluate("readiness", Deadline.after(1.0))
    assert [c.status for c in snapshot.checks] == [Status.SKIPPED, Status.SKIPPED]
    assert snapshot.state is state


async def test_a_failing_parent_skips_its_children_at_once_and_recovery_runs_them() -> None:
    """db turning failing skips the chain now; db recovering runs it now, not an interval later."""
    fakes = {"db": FakeCheck([P, F, P]), "api": FakeCheck(), "orders": FakeCheck()}
    engine = engine_with(fakes, settings(family(interval="1h", timeout="1s")))
    engine.runs.waking = True  # as engine.start() sets it, without the scheduler's own runs
    try:
        await run_now(engine, "db")
        await run_now(engine, "api")
        await run_now(engine, "orders")
        assert [fakes[n].calls for n in ("api", "orders")] == [1, 1]
        await run_now(engine, "db")  # fails
        assert [state(engine, n).status for n in ("api", "orders")] == [Status.SKIPPED] * 2
        assert [fakes[n].calls for n in ("api", "orders")] == [1, 1]
        await run_now(engine, "db")  # recovers: api runs at once, then orders after it
        await settle(engine)
        await settle(engine)
        assert [fakes[n].calls for n in ("api", "orders")] == [2, 2]
        assert [state(engine, n).status for n in ("api", "orders")] == [Status.PASS] * 2
    finally:
        await engine.stop()


async def test_scheduler_asks_next_delay() -> None:
    """Real timers: failures under failure_threshold come fast_interval apart (100 ms, not
    the 600 ms interval); once the check is failing, down_interval apart (1.5 s)."""
    s = settings([{"name": "db", "interval": "600ms", "timeout": "50ms",
                   "fast_interval": "100ms", "down_interval": "1500ms", "failure_threshold": 4,
                   "flapping": "off"}])  # fmt: skip
    fake = FakeCheck([P, F])
    engine = engine_with({"db": fake}, s)
    engine.start()
    try:
        await wait_for(lambda: fake.calls >= 2, 2.5)  # spread ≤ 1 s, then the interval
        assert fake.calls == 2
        took = await wait_for(lambda: fake.calls >= 5, 2.0)  # 3 more, ~100 ms apart
        assert fake.calls == 5
        assert took < 0.9  # three intervals would be ≥ 1.6 s
        assert state(engine, "db").status is Status.FAIL  # tripped at the 4th failure
        await asyncio.sleep(1.0)  # within down_interval (1.5 s ± 10 %): no run
        assert fake.calls == 5
        await wait_for(lambda: fake.calls >= 6, 2.0)
        assert fake.calls == 6
    finally:
        await engine.stop()


async def wait_for(predicate: object, timeout: float) -> float:
    """Seconds until `predicate()` held (polling every 5 ms), or `timeout`."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while loop.time() - started < timeout and not predicate():  # type: ignore[operator]
        await asyncio.sleep(0.005)
    return loop.time() - started


async def test_metrics_show_skipped_flapping_and_attempts() -> None:
    """healthd_check_status{status="skipped"}, healthd_check_flapping, attempts_total."""
    s = settings([
        {"name": "db", "mode": "on_demand", "retries": 1, "retry_delay": "1ms",
         "flapping": {"window": 4, "high": "50%", "low": "25%"}},
        {"name": "api", "mode": "on_demand", "depends_on": ["db"]},
    ])  # fmt: skip
    db = FakeCheck([ConnectionRefusedError(), P, F, P, F, P])
    registry = CollectorRegistry()
    telemetry = setup(s, registry=registry, env={})
    engine = engine_with(
        {"db": db, "api": FakeCheck()}, s, metrics=telemetry.metrics, observers=telemetry.observers
    )
    for _ in range(4):  # refused+pass (2 attempts), fail, pass, fail
        await run_now(engine, "db")
    await run_now(engine, "api")

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("healthd_check_attempts_total", check="db", kind="tcp") == 5
    assert value("healthd_check_flapping", check="db") == 1
    assert value("healthd_check_flapping", check="api") == 0
    assert value("healthd_check_status", check="api", kind="tcp", status="skipped") == 1
    assert value("healthd_check_runs_total", check="api", kind="tcp", outcome="fail") is None
    assert value("healthd_check_attempts_total", check="api", kind="tcp") is None


async def test_flapping_logs_started_and_stopped_once(caplog: pytest.LogCaptureFixture) -> None:
    """A flapping check logs "started flapping" once and "stopped flapping" once, and no
    line per change in between."""
    s = settings([{"name": "db", "mode": "on_demand",
                   "flapping": {"window": 6, "high": "50%", "low": "25%"}}])  # fmt: skip
    fake = FakeCheck([P, F] * 8 + [P] * 8)
    engine = engine_with({"db": fake}, s, observers=[TransitionLog()])
    with caplog.at_level(logging.INFO, logger="healthd.state"):
        for _ in range(24):
            await run_now(engine, "db")
    lines = [r.getMessage() for r in caplog.records if "check db" in r.getMessage()]
    assert sum("started flapping" in line for line in lines) == 1
    assert sum("stopped flapping" in line for line in lines) == 1
    start = next(i for i, line in enumerate(lines) if "started flapping" in line)
    stop = next(i for i, line in enumerate(lines) if "stopped flapping" in line)
    assert stop == start + 1  # nothing logged while it flapped
    assert start <= 6  # a line per change before: pass → fail → pass …
    db = state(engine, "db")
    assert (db.status, db.flapping) == (Status.PASS, False)


async def test_flapping_shows_in_json_and_verbose() -> None:
    """JSON carries "flapping": true and reason flapping; ?verbose says why it fails."""
    s = settings([{"name": "db", "mode": "on_demand",
                   "flapping": {"window": 4, "high": "50%", "low": "25%"}}])  # fmt: skip
    engine = engine_with({"db": FakeCheck([P, F, P, F, P])}, s)
    for _ in range(5):
        await run_now(engine, "db")
    snapshot = await engine.evaluate("readiness", Deadline.after(1.0))
    view = json.loads(render.Renderer().json(snapshot, details=True))["checks"]["db"]
    assert (view["status"], view["flapping"], view["reason"], view["last_outcome"]) == (
        "fail", True, "flapping", "pass",
    )  # fmt: skip
    assert snapshot.state is State.UNHEALTHY
    line = render.verbose_line(snapshot.checks[0], details=True)
    assert line.startswith("[-]db failed: flapping (")
    assert line.endswith("last run: pass")


async def test_stopped_flapping_is_logged_when_the_status_stays_fail(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Flapping that ends in steady failure changes no status, and still logs its end."""
    s = settings([{"name": "db", "mode": "on_demand",
                   "flapping": {"window": 4, "high": "50%", "low": "25%"}}])  # fmt: skip
    engine = engine_with({"db": FakeCheck([P, F, P, F] + [F] * 6)}, s, observers=[TransitionLog()])
    with caplog.at_level(logging.INFO, logger="healthd.state"):
        for _ in range(10):
            await run_now(engine, "db")
    lines = [r.getMessage() for r in caplog.records if "check db" in r.getMessage()]
    assert sum("stopped flapping" in line for line in lines) == 1, lines
    assert state(engine, "db").status is Status.FAIL
