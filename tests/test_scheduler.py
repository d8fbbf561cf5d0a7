"""Background loops (scheduler.py): first runs spread out at start, except loop checks."""

from __future__ import annotations

import asyncio
import time

from healthd.deadline import Deadline
from healthd.scheduler import FIRST_RUN_SPREAD, Scheduler
from tests.helpers import settings


async def test_loop_checks_run_at_start_and_the_others_are_spread() -> None:
    """At start a loop check runs at once (/livez waits on it); a tcp check first sleeps a
    random share of FIRST_RUN_SPREAD, so a hundred checks do not fire together."""
    runs: list[str] = []
    sleeps: list[float] = []

    async def run(name: str, deadline: Deadline) -> None:
        runs.append(name)

    async def park(seconds: float) -> None:
        sleeps.append(seconds)
        await asyncio.Event().wait()  # never wakes: one step of each loop is enough

    scheduler = Scheduler(run, time.monotonic, park)
    s = settings([{"name": "db", "interval": "10s"}, {"name": "lag", "kind": "loop"}])
    scheduler.start(list(s.all_checks))
    for _ in range(5):
        await asyncio.sleep(0)
    await scheduler.stop()
    assert runs == ["lag"]
    assert len(sleeps) == 2  # db's first-run spread, then lag's interval
    assert 0 <= min(sleeps) <= FIRST_RUN_SPREAD
