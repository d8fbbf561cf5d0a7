"""loop: healthd's own event loop is responsive."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from healthd import runner
from healthd.checks.base import Check, Context
from healthd.checks.loop import LoopSpec
from healthd.deadline import Deadline
from healthd.lag import LagMonitor
from healthd.model import Outcome, Reason


@pytest.fixture
async def monitor() -> AsyncIterator[LagMonitor]:
    """The lag monitor a daemon would make and hand to its loop checks."""
    lag = LagMonitor()
    yield lag
    await lag.stop()


def spec(**levels: str) -> LoopSpec:
    return LoopSpec(name="loop", kind="loop", **levels)


def built(s: LoopSpec, monitor: LagMonitor) -> Check:
    return s.build(Context(lag=monitor))


async def test_passes_when_the_loop_is_free(monitor: LagMonitor) -> None:
    """An idle loop passes with a lag well under warn_lag."""
    s = spec()
    result = await runner.run(s, built(s, monitor), Deadline.after(5.0))
    assert result.outcome is Outcome.PASS
    assert result.message.startswith("event loop lag ")


async def test_warns_when_a_callback_blocks_the_loop(monitor: LagMonitor) -> None:
    """A callback sleeping 150ms (blocking) → warn (warn_lag 100ms)."""
    s = spec()
    asyncio.get_running_loop().call_soon(time.sleep, 0.15)
    result = await runner.run(s, built(s, monitor), Deadline.after(5.0))
    assert result.outcome is Outcome.WARN


async def test_fails_past_fail_lag(monitor: LagMonitor) -> None:
    """A callback blocking past fail_lag → fail, reason unhealthy."""
    s = spec(warn_lag="50ms", fail_lag="120ms")
    asyncio.get_running_loop().call_soon(time.sleep, 0.15)
    result = await runner.run(s, built(s, monitor), Deadline.after(5.0))
    assert (result.outcome, result.reason) == (Outcome.FAIL, Reason.UNHEALTHY)


async def test_monitor_remembers_a_block_between_runs(monitor: LagMonitor) -> None:
    """A block between two runs is reported by the next run (the sampler saw it)."""
    s = spec()
    check = built(s, monitor)
    await runner.run(s, check, Deadline.after(5.0))  # starts the sampler
    await asyncio.sleep(0.06)
    asyncio.get_running_loop().call_soon(time.sleep, 0.15)
    await asyncio.sleep(0.1)  # the block happens here, not during the run
    result = await runner.run(s, check, Deadline.after(5.0))
    assert result.outcome is Outcome.WARN


def test_warn_lag_must_be_below_fail_lag() -> None:
    """warn_lag >= fail_lag is a config error."""
    with pytest.raises(ValueError, match="warn_lag"):
        spec(warn_lag="1s", fail_lag="500ms")


async def test_reads_the_monitor_it_was_built_with(monitor: LagMonitor) -> None:
    """The check reports the lag of the daemon's monitor handed over in its context."""
    s = spec()
    check = built(s, monitor)
    monitor.ensure_running()
    await asyncio.sleep(0.06)
    time.sleep(0.15)  # the monitor's sampler sees this block; the check was not running
    await asyncio.sleep(0.06)
    assert (await runner.run(s, check, Deadline.after(5.0))).outcome is Outcome.WARN
    other = built(s, LagMonitor())  # a check built with another monitor saw nothing
    assert (await runner.run(s, other, Deadline.after(5.0))).outcome is Outcome.PASS
