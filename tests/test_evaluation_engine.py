"""Evaluation beyond thresholds, wired into the engine (DESIGN §13): skipped children and
their cascade, the scheduler asking next_delay, and what views, metrics and logs show.
FakeChecks and a scheduler whose sleeps are recorded, not slept."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from healthd import render
from healthd.deadline import Deadline
from healthd.engine import Engine
from healthd.model import Outcome, State, Status
from healthd.observers import setup
from healthd.observers.log import TransitionLog
from healthd.testing import FakeCheck
from tests.helpers import engine_with, settings

P, F, T = Outcome.PASS, Outcome.FAIL, Outcome.TIMEOUT


async def parked(_: float) -> None:
    """A scheduler sleep that never ends: background loops wait; the test drives runs."""
    await asyncio.Event().wait()


def family(critical: bool = True, **child: Any) -> list[dict[str, Any]]:
    return [
        {"name": "db", "mode": "on_demand"},
        {"name": "api", "depends_on": ["db"], "critical": critical, **child},
        {"name": "orders", "depends_on": ["api"], "critical": critical},
    ]


async def settle(engine: Engine) -> None:
    """Until the runs the engine started on its own (a cascade) have recorded."""
    for _ in range(100):
        if not engine.inflight():
            return
        await asyncio.sleep(0.001)


async def test_child_of_a_failing_parent_is_skipped_not_run() -> None:
    """While db fails, api and orders are not run: skipped, naming db as the root cause."""
    fakes = {"db": FakeCheck([T]), "api": FakeCheck(), "orders": FakeCheck()}
    engine = engine_with(fakes, settings(family()))
    await engine.run_now("db")
    await engine.run_now("api")
    await engine.run_now("orders")
    snapshot = await engine.evaluate("readiness", Deadline.after(1.0))
    assert fakes["api"].calls == fakes["orders"].calls == 0
    by_name = {c.name: c for c in snapshot.checks}
    assert by_name["api"].status is Status.SKIPPED
    assert by_name["orders"].status is Status.SKIPPED
    text = render.render_verbose(snapshot, "readyz", False, details=True)
    assert "[-]api skipped: depends on db (timeout)" in text
    assert "[-]orders skipped: depends on db (timeout)" in text
    body = json.loads(render.render_json(snapshot, details=True))
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
    await engine.run_now("db")
    snapshot = await engine.evaluate("readiness", Deadline.after(1.0))
    assert [c.status for c in snapshot.checks] == [Status.SKIPPED, Status.SKIPPED]
    assert snapshot.state is state


async def test_a_failing_parent_skips_its_children_at_once_and_recovery_runs_them() -> None:
    """db turning failing skips the chain now; db recovering runs it now, not an interval later."""
    fakes = {"db": FakeCheck([P, F, P]), "api": FakeCheck(), "orders": FakeCheck()}
    engine = engine_with(fakes, settings(family(interval="1h", timeout="1s")), sleep=parked)
    engine.start()
    try:
        await engine.run_now("db")
        await engine.run_now("api")
        await engine.run_now("orders")
        assert [fakes[n].calls for n in ("api", "orders")] == [1, 1]
        await engine.run_now("db")  # fails
        assert {s.name: s.status for s in engine.states(["api", "orders"])} == {
            "api": Status.SKIPPED,
            "orders": Status.SKIPPED,
        }
        assert [fakes[n].calls for n in ("api", "orders")] == [1, 1]
        await engine.run_now("db")  # recovers: api runs at once, then orders after it
        await settle(engine)
        await settle(engine)
        assert [fakes[n].calls for n in ("api", "orders")] == [2, 2]
        assert [s.status for s in engine.states(["api", "orders"])] == [Status.PASS] * 2
    finally:
        await engine.stop()


async def test_scheduler_asks_next_delay() -> None:
    """Background delays follow fast_interval and down_interval (with ±10% jitter)."""
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        task = asyncio.current_task()
        if task is None or task.get_name() != "check:db" or len(delays) > 6:
            await asyncio.Event().wait()  # the implicit loop check, and db once seen enough
        delays.append(seconds)
        await asyncio.sleep(0)

    s = settings([{"name": "db", "interval": "10s", "timeout": "500ms", "fast_interval": "1s",
                   "down_interval": "30s", "failure_threshold": 2, "success_threshold": 2,
                   "flapping": "off"}])  # fmt: skip
    fake = FakeCheck([P, F, F, F, P, P])
    engine = engine_with({"db": fake}, s, sleep=sleep)
    engine.start()
    try:
        for _ in range(200):
            if len(delays) > 6:
                break
            await asyncio.sleep(0.001)
    finally:
        await engine.stop()
    assert delays[0] <= 1.0  # the first run's spread
    ratios = [got / want for got, want in zip(delays[1:7], [10, 1, 30, 30, 1, 10], strict=True)]
    assert all(0.9 <= r <= 1.1 for r in ratios), delays


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
    engine = engine_with({"db": db, "api": FakeCheck()}, s, observers=telemetry.observers)
    telemetry.bind(engine)
    for _ in range(4):  # refused+pass (2 attempts), fail, pass, fail
        await engine.run_now("db")
    await engine.run_now("api")

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
            await engine.run_now("db")
    lines = [r.getMessage() for r in caplog.records if "check db" in r.getMessage()]
    assert sum("started flapping" in line for line in lines) == 1
    assert sum("stopped flapping" in line for line in lines) == 1
    start = next(i for i, line in enumerate(lines) if "started flapping" in line)
    stop = next(i for i, line in enumerate(lines) if "stopped flapping" in line)
    assert stop == start + 1  # nothing logged while it flapped
    assert start <= 6  # a line per change before: pass → fail → pass …
    state = engine.states(["db"])[0]
    assert (state.status, state.flapping) == (Status.PASS, False)


async def test_flapping_shows_in_json_and_verbose() -> None:
    """JSON carries "flapping": true and reason flapping; ?verbose says why it fails."""
    s = settings([{"name": "db", "mode": "on_demand",
                   "flapping": {"window": 4, "high": "50%", "low": "25%"}}])  # fmt: skip
    engine = engine_with({"db": FakeCheck([P, F, P, F, P])}, s)
    for _ in range(5):
        await engine.run_now("db")
    snapshot = await engine.evaluate("readiness", Deadline.after(1.0))
    view = json.loads(render.render_json(snapshot, details=True))["checks"]["db"]
    assert (view["status"], view["flapping"], view["reason"], view["last_outcome"]) == (
        "fail", True, "flapping", "pass",
    )  # fmt: skip
    assert snapshot.state is State.UNHEALTHY
    line = render.verbose_line(snapshot.checks[0], details=True)
    assert line.startswith("[-]db failed: flapping (")
    assert line.endswith("last run: pass")
