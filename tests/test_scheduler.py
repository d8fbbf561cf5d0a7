"""Background loops (scheduler.py): first runs spread out at start, except loop checks."""

from __future__ import annotations

import asyncio
import time

from healthd.deadline import Deadline
from healthd.scheduler import FIRST_RUN_SPREAD, TICK, Scheduler
from tests.helpers import settings


async def test_loop_checks_run_at_start_and_the_others_are_spread() -> None:
    """At start a loop check runs at once (/livez waits on it); a tcp check's first run is
    a random share of FIRST_RUN_SPREAD away, so a hundred checks do not fire together."""
    runs: list[str] = []

    def start(name: str, deadline: Deadline, background: bool) -> asyncio.Future[None]:
        runs.append(name)
        return asyncio.get_running_loop().create_future()  # never finishes: one run is enough

    scheduler = Scheduler(start, time.monotonic)
    s = settings([{"name": "db", "interval": "10s"}, {"name": "lag", "kind": "loop"}])
    scheduler.start(list(s.all_checks))
    for _ in range(5):
        await asyncio.sleep(0)
    due = scheduler.due("db")
    scheduler.stop()
    assert runs == ["lag"]
    assert due is not None
    assert 0 <= due - asyncio.get_running_loop().time() <= FIRST_RUN_SPREAD


async def test_due_times_fall_on_ticks_so_runs_start_together() -> None:
    """A delayed run is due on a TICK boundary: checks due within one tick share a wake-up."""

    def start(name: str, deadline: Deadline, background: bool) -> asyncio.Future[None]:
        return asyncio.get_running_loop().create_future()

    scheduler = Scheduler(start, time.monotonic)
    s = settings([{"name": f"c{i}", "interval": "10s"} for i in range(20)])
    scheduler.start(list(s.checks))
    dues = [scheduler.due(f"c{i}") for i in range(20)]
    scheduler.stop()
    for due in dues:
        assert due is not None
        assert abs(due / TICK - round(due / TICK)) < 1e-6
