"""The engine: background runs, coalescing, reloads mid-request, thresholds, freshness,
warn_after, and contained observers."""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
import time

import pytest

from healthd import runner
from healthd.checks import KINDS, SPECS
from healthd.checks.base import SpecBase
from healthd.deadline import Deadline
from healthd.events import Observer
from healthd.health import Health
from healthd.model import CheckResult, CheckState, Observation, Outcome, Reason, State, Status
from healthd.runs import MAX_RUNS
from healthd.testing import FakeCheck, ManualClock
from tests.helpers import engine_with, run_now, settings


async def test_background_loop_runs_every_interval() -> None:
    """A background check runs at start (within the jitter) and again every interval."""
    fake = FakeCheck()
    engine = engine_with(
        {"db": fake}, settings([{"name": "db", "interval": "200ms", "timeout": "100ms"}])
    )
    engine.start()
    try:
        await asyncio.sleep(1.0 + 0.2 * 1.1 * 2 + 0.1)  # first-run jitter ≤ 1s, then 2 intervals
        assert fake.calls >= 3
    finally:
        await engine.stop()
    calls = fake.calls
    await asyncio.sleep(0.3)
    assert fake.calls == calls  # stopped means stopped


async def test_concurrent_requests_share_one_run() -> None:
    """A hundred concurrent fresh evaluations run the check once and all see its result."""
    fake = FakeCheck(delay=0.1)
    engine = engine_with({"db": fake}, settings([{"name": "db", "mode": "on_demand"}]))
    snapshots = await asyncio.gather(
        *(engine.evaluate("readiness", Deadline.after(2.0), fresh=True) for _ in range(100))
    )
    assert fake.calls == 1
    assert {s.state for s in snapshots} == {State.HEALTHY}


async def test_caller_stops_waiting_at_its_deadline_without_cancelling_the_run() -> None:
    """A short-budget caller gets a timeout at its deadline; the shared run still records."""
    fake = FakeCheck(delay=0.3)
    engine = engine_with({"db": fake}, settings([{"name": "db", "mode": "on_demand"}]))
    long = asyncio.create_task(engine.evaluate("readiness", Deadline.after(2.0)))
    await asyncio.sleep(0.01)
    short = await engine.evaluate("readiness", Deadline.after(0.1))
    assert short.checks[0].status is Status.TIMEOUT
    assert short.state is State.UNHEALTHY
    assert (await long).state is State.HEALTHY
    assert fake.calls == 1


async def test_reload_while_a_request_waits() -> None:
    """A check removed by a reload while a request waits on it never breaks the answer."""
    fake = FakeCheck(delay=0.2)
    s = settings([{"name": "db", "mode": "on_demand"}, {"name": "keep", "kind": "loop"}])
    engine = engine_with({"db": fake}, s)
    waiting = asyncio.create_task(engine.evaluate("readiness", Deadline.after(0.1)))
    await asyncio.sleep(0.02)
    await engine.reload(settings([{"name": "keep", "kind": "loop"}]))
    snapshot = await waiting
    assert [c.name for c in snapshot.checks] == ["keep"]
    await engine.stop()


class Broken(Observer):
    def on_result(self, spec: SpecBase, result: CheckResult, state: CheckState) -> None:
        raise RuntimeError("observer bug")


async def test_a_broken_observer_is_contained(caplog: pytest.LogCaptureFixture) -> None:
    """An observer that raises is logged; the run, its result and the answer stand."""
    engine = engine_with(
        {"db": FakeCheck([Outcome.FAIL])},
        settings([{"name": "db", "mode": "on_demand"}]),
        observers=[Broken()],
    )
    snapshot = await engine.evaluate("readiness", Deadline.after(1.0))
    assert snapshot.state is State.UNHEALTHY
    assert "observer Broken failed" in caplog.text


def test_building_a_check_preloads_its_driver() -> None:
    """The engine imports a kind's driver when it builds the check, not in its first run."""
    code = (
        "import sys; from healthd.config import parse_settings; from healthd.health import Health;"
        "s = parse_settings('checks:\\n  - {name: g, kind: grpc, target: \"h:1\"}\\n');"
        "assert 'grpc.aio' not in sys.modules; Health(settings=s); assert 'grpc.aio' in sys.modules"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("kind", KINDS)
def test_preloaded_modules_exist(kind: str) -> None:
    """Every module a kind preloads can be imported (a typo would break start-up)."""
    for module in SPECS[kind].imports:
        importlib.import_module(module)


async def test_engine_applies_the_specs_thresholds() -> None:
    """failure_threshold 3 and success_threshold 2: the engine holds a pass through two
    failures and a failure through one pass."""
    P, F = Outcome.PASS, Outcome.FAIL
    script = [P, F, F, F, P, P, F]
    spec = {"name": "db", "mode": "on_demand", "failure_threshold": 3, "success_threshold": 2}
    engine = engine_with({"db": FakeCheck(script)}, settings([spec]))
    seen = []
    for _ in script:
        snapshot = await engine.evaluate("readiness", Deadline.after(1.0))
        [state] = snapshot.checks
        assert state.last is not None
        seen.append((state.status, state.last.outcome))
    S = Status
    assert seen == [
        (S.PASS, P), (S.PASS, F), (S.PASS, F), (S.FAIL, F), (S.FAIL, P), (S.PASS, P), (S.PASS, F),
    ]  # fmt: skip


async def test_background_runs_get_the_checks_timeout(blackhole: tuple[str, int]) -> None:
    """A background run's deadline is check.timeout (800 ms), not deadline.default (200 ms)."""
    host, port = blackhole
    hung = {"name": "hung", "address": f"{host}:{port}", "timeout": "800ms", "interval": "10s"}
    clock = ManualClock()  # budgets exact; the run itself still waits 800 ms of real time
    engine = Health(settings=settings([hung], deadline={"default": "200ms"}), clock=clock)
    started = time.monotonic()
    engine.start()
    try:
        async with asyncio.timeout(10.0):  # first-run jitter ≤ 1 s, then the 800 ms run
            while (state := engine.store.check("hung")) is None or state.last is None:
                await asyncio.sleep(0.02)
        last = state.last
    finally:
        await engine.stop()
    assert (last.outcome, last.message) == (Outcome.TIMEOUT, "timeout after 800ms")
    assert last.timeout == pytest.approx(0.8)
    assert time.monotonic() - started >= 0.8


async def test_default_max_age_is_three_intervals() -> None:
    """Without max_age a result holds for three intervals (30 s at 10 s), then reads unknown."""
    clock = ManualClock()
    engine = engine_with({"db": FakeCheck()}, settings([{"name": "db", "interval": "10s"}]),
                         clock=clock)  # fmt: skip
    await run_now(engine, "db")
    clock.advance(29.9)
    snapshot = await engine.evaluate("readiness", Deadline.after(1.0, clock))
    assert (snapshot.state, snapshot.checks[0].status) == (State.HEALTHY, Status.PASS)
    clock.advance(0.2)
    snapshot = await engine.evaluate("readiness", Deadline.after(1.0, clock))
    assert (snapshot.state, snapshot.checks[0].status) == (State.UNKNOWN, Status.UNKNOWN)


class Takes:
    """A check that passes after `seconds` on a ManualClock (durations exact, no sleeping)."""

    def __init__(self, clock: ManualClock, seconds: float) -> None:
        self.clock, self.seconds = clock, seconds

    async def __call__(self, deadline: Deadline) -> Observation:
        self.clock.advance(self.seconds)
        return Observation(Outcome.PASS, "ok")


@pytest.mark.parametrize(
    ("seconds", "outcome", "message"),
    [(0.3, Outcome.WARN, "slow: 300ms > warn_after 200ms"), (0.1, Outcome.PASS, "ok")],
)
async def test_a_pass_slower_than_warn_after_is_a_warn(
    seconds: float, outcome: Outcome, message: str
) -> None:
    """warn_after 200ms: a 300 ms pass is a warn saying so; a 100 ms pass stays a pass."""
    clock = ManualClock()
    [spec] = settings([{"name": "db", "warn_after": "200ms"}]).checks
    result = await runner.run(spec, Takes(clock, seconds), Deadline.after(1.0, clock))
    assert (result.outcome, result.reason, result.message) == (outcome, Reason.OK, message)
    assert result.duration == pytest.approx(seconds)


async def test_a_background_run_that_starts_late_still_gets_its_whole_timeout() -> None:
    """The loop lagged between scheduling a run and starting it: the run still gets
    check.timeout from its start, not what the lag left (a loop check said "after 0ms")."""
    clock = ManualClock()
    fake = FakeCheck()
    spec = {"name": "db", "timeout": "500ms", "interval": "5s"}
    engine = engine_with({"db": fake}, settings([spec]), clock=clock)
    scheduled = Deadline.after(0.5, clock)
    clock.advance(0.6)  # lag: the scheduled deadline has passed before the run starts
    result = await engine.runs.start("db", scheduled, background=True)
    assert fake.deadlines == [pytest.approx(0.5)]
    assert isinstance(result, CheckResult)
    assert result.outcome is Outcome.PASS


async def test_callers_giving_up_on_a_run_share_one_timeout_result() -> None:
    """200 callers with one budget on a hung check: one run, one shared timeout result,
    every caller answered unhealthy at its deadline (not after it)."""
    fake = FakeCheck(delay=5.0)
    s = settings([{"name": "hung", "mode": "on_demand", "timeout": "5s", "interval": "10s"}])
    engine = engine_with({"hung": fake}, s)
    engine.runs.start("hung", Deadline.after(5.0))  # a run with a longer budget is in flight
    deadline = Deadline.after(0.2)
    evaluations = await asyncio.gather(
        *(engine.runs.evaluate("readiness", deadline) for _ in range(200))
    )
    assert fake.calls == 1
    assert len({id(e.late["hung"]) for e in evaluations}) == 1
    assert evaluations[0].late["hung"].message == "timeout after 200ms"
    assert {e.state for e in evaluations} == {State.UNHEALTHY}
    await engine.stop()


async def test_a_shorter_callers_run_does_not_cut_a_longer_callers_answer() -> None:
    """A 100 ms caller starts a run of a check that takes 200 ms; a 2 s caller arriving
    just after gets a run of its own (its whole budget) and the pass, not "timeout after
    100ms"; the store keeps the pass, never the cut-short run's timeout."""
    fake = FakeCheck(delay=0.2)
    seen = Outcomes()
    s = settings([{"name": "db", "mode": "on_demand", "timeout": "1s", "interval": "10s"}])
    engine = engine_with({"db": fake}, s, observers=[seen])
    short = asyncio.create_task(engine.evaluate("readiness", Deadline.after(0.1)))
    await asyncio.sleep(0.01)
    started = time.monotonic()
    long = await engine.evaluate("readiness", Deadline.after(2.0))
    took = time.monotonic() - started
    assert (await short).checks[0].status is Status.TIMEOUT  # at its own deadline
    assert long.checks[0].status is Status.PASS, long.checks[0].last
    assert 0.18 <= took < 0.6, took  # the 200 ms run, not the 100 ms cut
    assert fake.calls == 2
    assert fake.deadlines[1] == pytest.approx(1.0, abs=0.05)  # the check's own timeout
    assert seen == [Outcome.PASS]  # the cut-short timeout was not recorded
    await engine.stop()


async def test_callers_with_one_budget_arriving_apart_share_at_most_two_runs() -> None:
    """300 callers with a 1 s budget on a hung check, in waves at 0, 30 and 200 ms: the
    second wave is within JOIN_SLACK (10 %: 100 ms) of the first and joins its run, the
    third starts one more. Every caller answers by its own deadline, and none more than
    100 ms before it. (The gaps leave room for a loaded loop's late wake-ups.)"""
    fake = FakeCheck(delay=5.0)
    s = settings([{"name": "hung", "mode": "on_demand", "timeout": "5s", "interval": "10s"}])
    engine = engine_with({"hung": fake}, s)

    async def caller() -> tuple[float, float]:
        deadline = Deadline.after(1.0)
        await engine.runs.evaluate("readiness", deadline)
        return time.monotonic(), deadline.at

    waves = []
    for pause in (0.0, 0.03, 0.17):
        await asyncio.sleep(pause)
        waves.append([asyncio.create_task(caller()) for _ in range(100)])
    answers = [await task for wave in waves for task in wave]
    assert fake.calls == 2
    for answered, at in answers:
        assert at - 0.1 - 0.01 <= answered <= at + 0.1, answered - at  # + a loaded loop
    assert min(answered - at for answered, at in answers) < -0.01  # the second wave's share
    await engine.stop()


async def test_runs_of_one_check_in_flight_are_capped() -> None:
    """Callers with ever longer budgets on a hung check, each past the cut-short run before
    it: the first two get runs of their own, every later one joins the last (MAX_RUNS), so
    a burst of budgets never becomes a run per caller."""
    fake = FakeCheck(delay=5.0)
    s = settings([{"name": "hung", "mode": "on_demand", "timeout": "5s", "interval": "10s"}])
    engine = engine_with({"hung": fake}, s)
    tasks = [engine.runs.start("hung", Deadline.after(b)) for b in (0.1, 0.4, 0.8, 1.6, 3.2)]
    await asyncio.sleep(0.05)
    assert MAX_RUNS == 2
    assert fake.calls == MAX_RUNS
    assert len(set(tasks)) == MAX_RUNS
    assert tasks[2:] == [tasks[1]] * 3  # joined the run that ends last
    await engine.stop()


class Outcomes(Observer, list[Outcome]):
    """The outcome of every result the store records."""

    def on_result(self, spec: SpecBase, result: CheckResult, state: CheckState) -> None:
        self.append(result.outcome)
