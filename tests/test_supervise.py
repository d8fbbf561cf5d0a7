"""DESIGN §16 on real processes with real signals: `healthd run -c FILE -- CMD` owns the order.

The child (tests/supervised_app.py) records when it got each signal, so the tests can
prove the stop signal came after drain_delay, not before, and that healthd's listeners
closed only after the child was gone.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest

from tests.supervising import (
    DRAIN,
    EARLY,
    STOP_TIMEOUT,
    config,
    exit_line,
    get,
    started,
    supervised,
    wait_ready,
)
from tests.test_lifecycle import closed_at, wait_line

pytestmark = pytest.mark.slow

# --- the order ------------------------------------------------------------------------------


async def test_stop_signal_comes_after_drain_delay_and_listeners_close_after_the_child(
    tmp_path: Path,
) -> None:
    """SIGTERM: readiness 503 at once while the child runs untouched; the child's SIGTERM
    after drain_delay; probes answered until it is gone; listeners close after; exit 0."""
    async with supervised(tmp_path, "--after", "0.5") as (h, record):
        await started(record)
        await wait_ready(h)
        t0 = time.time()
        h.signal(signal.SIGTERM)
        assert (await get(h.url("/readyz")))[0] == 503
        assert (await get(h.url("/livez")))[0] == 200
        assert not record.saw("got SIGTERM")  # the app keeps serving through the drain
        got = await record.wait("got SIGTERM")
        assert got - t0 >= DRAIN - EARLY
        assert (await get(h.url("/livez")))[0] == 200  # still answering while the child stops
        assert await h.wait() == 0
    exited = record.when("exiting 0")
    assert closed_at(h) >= exited
    assert re.search(
        r"exit: SIGTERM; draining 1\.\d\d s; child SIGTERM → exited 0 in 0\.\d\d s; "
        r"probes in flight 0; code 0$", exit_line(h),
    ), exit_line(h)  # fmt: skip


async def test_the_stop_signal_is_configurable_and_dying_of_it_exits_0(tmp_path: Path) -> None:
    """stop_signal: SIGQUIT goes to the child; a child dying of it (as uvicorn re-raises)
    stopped as asked: exit 0."""
    cfg = config(shutdown=", stop_signal: quit")
    async with supervised(tmp_path, "--stop", "SIGQUIT", "--on-stop", "raise", cfg=cfg) as (
        h,
        record,
    ):
        await started(record)
        h.signal(signal.SIGTERM)
        assert await h.wait() == 0
    assert record.saw("got SIGQUIT")
    assert not record.saw("got SIGTERM")
    assert "child SIGQUIT → killed by SIGQUIT" in exit_line(h)


@pytest.mark.parametrize(
    ("on_stop", "code"), [("exit:3", 3), ("kill:SIGUSR2", 128 + signal.SIGUSR2)]
)
async def test_exit_code_is_the_childs(tmp_path: Path, on_stop: str, code: int) -> None:
    """The child's exit code; killed by a signal healthd did not send: 128 + N."""
    async with supervised(tmp_path, "--on-stop", on_stop) as (h, record):
        await started(record)
        h.signal(signal.SIGTERM)
        assert await h.wait() == code
    assert exit_line(h).endswith(f"code {code}")


async def test_a_child_ignoring_the_stop_signal_is_killed_after_stop_timeout(
    tmp_path: Path,
) -> None:
    """stop_timeout after the stop signal: SIGKILL to the group, exit 137, and the exit line
    says the child ignored it."""
    async with supervised(tmp_path, "--on-stop", "ignore") as (h, record):
        await started(record)
        t0 = time.time()
        h.signal(signal.SIGTERM)
        assert await h.wait() == 137
        took = time.time() - t0
    assert took >= DRAIN + STOP_TIMEOUT - EARLY
    line = exit_line(h)
    assert "child SIGTERM → ignored it for 1.5" in line
    assert "SIGKILL → killed by SIGKILL" in line
    assert line.endswith("code 137")


async def test_a_second_signal_during_the_drain_sends_the_stop_signal_at_once(
    tmp_path: Path,
) -> None:
    """A second SIGTERM during drain_delay: the child gets its stop signal at once."""
    cfg = config().replace(f"drain_delay: {DRAIN}s", "drain_delay: 30s")
    async with supervised(tmp_path, cfg=cfg) as (h, record):
        await started(record)
        h.signal(signal.SIGTERM)
        await wait_line(h, "draining")
        t1 = time.time()
        h.signal(signal.SIGINT)
        got = await record.wait("got SIGTERM")
        assert got - t1 < 5.0  # not the 30 s drain
        assert await h.wait() == 0
    assert "(cut short: SIGINT)" in exit_line(h)


async def test_a_second_signal_during_stop_timeout_kills_at_once(tmp_path: Path) -> None:
    """A second SIGTERM while the child ignores its stop signal: SIGKILL at once, 137."""
    cfg = config().replace(f"stop_timeout: {STOP_TIMEOUT}s", "stop_timeout: 30s")
    async with supervised(tmp_path, "--on-stop", "ignore", cfg=cfg) as (h, record):
        await started(record)
        h.signal(signal.SIGTERM)
        await record.wait("got SIGTERM")
        t1 = time.time()
        h.signal(signal.SIGTERM)
        assert await h.wait(10) == 137
        assert time.time() - t1 < 5.0
    assert "SIGKILL at a second SIGTERM" in exit_line(h)


async def test_a_child_exiting_on_its_own_ends_healthd_within_a_second(tmp_path: Path) -> None:
    """The child exits 7 by itself: healthd exits within 1 s with 7, and says why."""
    async with supervised(tmp_path, "--exit-after", "1.5:7") as (h, record):
        await started(record)
        code = await h.wait()
        ended = time.time()
    assert code == 7
    assert ended - record.when("exiting 7") < 1.0
    assert any("on its own" in line and "exited 7" in line for line in h.lines)
    assert exit_line(h).startswith(exit_line(h).split("exit: ")[0] + "exit: child ended;")
    assert exit_line(h).endswith("code 7")


async def test_a_child_exiting_during_the_drain_ends_it_at_once(tmp_path: Path) -> None:
    """The child ends during drain_delay: no waiting out the drain, its code."""
    cfg = config().replace(f"drain_delay: {DRAIN}s", "drain_delay: 30s")
    async with supervised(tmp_path, "--exit-after", "2:0", cfg=cfg) as (h, record):
        await started(record)
        h.signal(signal.SIGTERM)
        code = await h.wait(15)
    assert code == 0
    assert "(cut short: the child ended)" in exit_line(h)
    assert "on its own" in exit_line(h)
