"""loop: healthd's own event loop is responsive."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from healthd import runner
from healthd.checks.loop import MONITOR, LoopSpec
from healthd.deadline import Deadline
from healthd.model import Outcome, Reason


@pytest.fixture(autouse=True)
async def _monitor() -> AsyncIterator[None]:
    """The lag monitor is per process; each test's loop gets a fresh one."""
    stale = MONITOR._task
    if stale is not None and stale.get_loop() is not asyncio.get_running_loop():
        MONITOR._task = None  # left behind on another test's (closed) loop
    await MONITOR.stop()
    MONITOR.take_worst()
    yield
    await MONITOR.stop()


def spec(**levels: str) -> LoopSpec:
    return LoopSpec(name="loop", kind="loop", **levels)


async def test_passes_when_the_loop_is_free() -> None:
    """An idle loop passes with a lag well under warn_lag."""
    s = spec()
    result = await runner.run(s, s.build(), Deadline.after(5.0))
    assert result.outcome is Outcome.PASS
    assert result.message.startswith("event loop lag ")


async def test_warns_when_a_callback_blocks_the_loop() -> None:
    """A callback sleeping 150ms (blocking) → warn (warn_lag 100ms)."""
    s = spec()
    asyncio.get_running_loop().call_soon(time.sleep, 0.15)
    result = await runner.run(s, s.build(), Deadline.after(5.0))
    assert result.outcome is Outcome.WARN


async def test_fails_past_fail_lag() -> None:
    """A callback blocking past fail_lag → fail, reason unhealthy."""
    s = spec(warn_lag="50ms", fail_lag="120ms")
    asyncio.get_running_loop().call_soon(time.sleep, 0.15)
    result = await runner.run(s, s.build(), Deadline.after(5.0))
    assert (result.outcome, result.reason) == (Outcome.FAIL, Reason.UNHEALTHY)


async def test_monitor_remembers_a_block_between_runs() -> None:
    """A block between two runs is reported by the next run (the sampler saw it)."""
    s = spec()
    check = s.build()
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
