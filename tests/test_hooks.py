"""Cleanup hooks (DESIGN §17, healthd/hooks.py): reverse order, a timeout each, never past
the overall deadline; a hook that raises or hangs never stops the next one."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

from healthd import Health
from healthd.hooks import HookReport, Hooks


async def test_hooks_run_in_reverse_order_of_registration() -> None:
    """The last registered runs first (it was opened last); sync and async alike."""
    ran: list[str] = []
    hooks = Hooks()

    async def close_db() -> None:
        ran.append("db")

    def flush_kafka() -> None:
        ran.append("kafka")

    hooks.add(close_db, name="db.close")
    hooks.add(flush_kafka, name="kafka.flush")
    reports = await hooks.run(time.monotonic() + 5)
    assert ran == ["kafka", "db"]
    assert [r.name for r in reports] == ["kafka.flush", "db.close"]
    assert all(r.outcome == "ok" for r in reports)


async def test_a_hook_that_raises_is_logged_by_name_and_the_next_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The failure is one log line naming the hook; the hook registered before it runs."""
    ran: list[str] = []
    hooks = Hooks()
    hooks.add(lambda: ran.append("first"), name="first")

    async def broken() -> None:
        raise RuntimeError("pool already closed")

    hooks.add(broken, name="pool.close")
    with caplog.at_level(logging.ERROR, "healthd"):
        reports = await hooks.run(time.monotonic() + 5)
    assert ran == ["first"]
    assert reports[0] == HookReport("pool.close", reports[0].took, "failed", reports[0].error)
    assert reports[0].error == "RuntimeError: pool already closed"
    assert "hook pool.close failed" in caplog.text
    assert "RuntimeError: pool already closed" in caplog.text
    assert reports[1].outcome == "ok"


async def test_a_hung_async_hook_is_cut_at_its_timeout_and_the_next_runs() -> None:
    """Cut at its own timeout (not before, not long after), reported as timed out."""
    ran: list[str] = []
    hooks = Hooks()
    hooks.add(lambda: ran.append("next"), name="next")

    async def hangs() -> None:
        await asyncio.Event().wait()

    hooks.add(hangs, name="kafka.flush", timeout="300ms")
    started = time.monotonic()
    reports = await hooks.run(started + 10)
    hung = reports[0]
    assert hung.outcome == "timed out"
    assert 0.29 <= hung.took < 0.9
    assert ran == ["next"]
    assert hung.describe() == f"kafka.flush {hung.took:.2f} s (timed out)"


async def test_a_hung_sync_hook_never_holds_the_loop() -> None:
    """A blocking function runs in its own thread: cut at its timeout while the loop ticks."""
    release = threading.Event()
    hooks = Hooks()
    hooks.add(lambda: release.wait(10), name="blocking", timeout=0.3)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    reports = await hooks.run(time.monotonic() + 10)
    ticker.cancel()
    release.set()
    assert reports[0].outcome == "timed out"
    assert 0.29 <= reports[0].took < 0.9
    assert ticks >= 10  # the loop ran all along


async def test_no_hook_runs_past_the_overall_deadline() -> None:
    """The deadline cuts a hook before its own timeout; hooks after it are skipped."""
    hooks = Hooks()
    hooks.add(lambda: None, name="last")

    async def slow() -> None:
        await asyncio.sleep(5)

    hooks.add(slow, name="slow", timeout="5s")
    started = time.monotonic()
    reports = await hooks.run(started + 0.3)
    assert 0.29 <= reports[0].took < 0.9
    assert reports[0].outcome == "timed out"
    assert reports[1] == HookReport("last", 0.0, "skipped")
    assert time.monotonic() - started < 1.0


async def test_skip_cuts_the_running_hook_only() -> None:
    """A second signal cuts the hook running then; the next hook runs in full."""
    skip = asyncio.Event()
    ran: list[str] = []
    hooks = Hooks()
    hooks.add(lambda: ran.append("after"), name="after")

    async def slow() -> None:
        await asyncio.sleep(5)

    hooks.add(slow, name="slow", timeout="5s")
    asyncio.get_running_loop().call_later(0.2, skip.set)
    reports = await hooks.run(time.monotonic() + 10, skip)
    assert reports[0].outcome == "timed out"
    assert 0.19 <= reports[0].took < 0.8
    assert ran == ["after"]
    assert not skip.is_set()


async def test_hooks_run_once() -> None:
    """A second run (the app's cleanup after the shell ran them) has nothing to do."""
    ran: list[int] = []
    hooks = Hooks()
    hooks.add(lambda: ran.append(1))
    await hooks.run(time.monotonic() + 5)
    assert await hooks.run(time.monotonic() + 5) == []
    assert ran == [1]


def test_bad_hooks_are_refused_with_one_line() -> None:
    """A non-callable or a bad timeout is an error naming what is wrong."""
    hooks = Hooks()
    with pytest.raises(TypeError, match="int is not callable"):
        hooks.add(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="invalid duration '5'"):
        hooks.add(lambda: None, timeout="5")
    with pytest.raises(ValueError, match="positive duration"):
        hooks.add(lambda: None, timeout=0)


async def test_health_on_stop_delegates_to_its_hooks() -> None:
    """`Health.on_stop(fn, timeout="5s")`: the name defaults to the bound method's."""

    class Pool:
        closed = False

        async def close(self) -> None:
            self.closed = True

    pool = Pool()
    health = Health()
    health.on_stop(pool.close, timeout="2s")
    assert len(health.hooks) == 1
    reports = await health.hooks.run(time.monotonic() + 5)
    assert pool.closed
    assert reports[0].name == "Pool.close"
