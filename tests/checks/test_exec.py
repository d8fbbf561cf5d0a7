"""`exec`: Nagios-style plugins run as real processes (`sh -c ...`)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from healthd import runner
from healthd.checks.exec import ExecSpec
from healthd.deadline import Deadline
from healthd.health import Health
from healthd.model import CheckResult, Outcome, Reason, Status
from tests.helpers import settings


async def run(script: str, timeout: str = "2s", **keys: Any) -> CheckResult:
    spec = ExecSpec(
        name="plugin", kind="exec", command=["sh", "-c", script], timeout=timeout, **keys
    )
    return await runner.run(spec, spec.build(), Deadline.after(5.0))


async def gone(pid: int) -> bool:
    """True once `pid` no longer runs (missing, or a zombie awaiting init), within 1 s."""
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        stat = Path(f"/proc/{pid}/stat")
        if stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return True
        await asyncio.sleep(0.02)
    return False


@pytest.mark.parametrize(
    ("code", "outcome", "reason"),
    [
        (0, Outcome.PASS, Reason.OK),
        (1, Outcome.WARN, Reason.OK),
        (2, Outcome.FAIL, Reason.UNHEALTHY),
        (7, Outcome.FAIL, Reason.UNEXPECTED),
    ],
)
async def test_exit_codes(code: int, outcome: Outcome, reason: Reason) -> None:
    """Exit 0 pass, 1 warn, 2 fail (unhealthy), other codes fail (unexpected)."""
    result = await run(f"echo 'PLUGIN says {code} | perf=1'; echo second line; exit {code}")
    assert (result.outcome, result.reason) == (outcome, reason)
    expected = f"PLUGIN says {code}"  # first line, perfdata dropped
    assert result.message == (f"exit 7: {expected}" if code == 7 else expected)


async def test_unknown_says_so() -> None:
    """Exit 3 → fail, reason unexpected, and the message says UNKNOWN."""
    result = await run("echo 'cannot reach the thing'; exit 3")
    assert (result.outcome, result.reason) == (Outcome.FAIL, Reason.UNEXPECTED)
    assert result.message == "UNKNOWN: cannot reach the thing"
    result = await run("echo 'UNKNOWN - already said'; exit 3")
    assert result.message == "UNKNOWN - already said"


async def test_stderr_is_the_message_when_stdout_is_empty() -> None:
    """A plugin that only writes to stderr is still explained."""
    result = await run("echo 'broken config' >&2; exit 2")
    assert result.message == "broken config"


async def test_no_output_names_the_exit_code() -> None:
    """A silent plugin gets `exit N` as its message."""
    assert (await run("exit 0")).message == "exit 0"


async def test_missing_binary_is_unknown() -> None:
    """A command that does not exist → fail, unexpected, UNKNOWN with the program."""
    spec = ExecSpec(name="plugin", kind="exec", command=["/nonexistent/check_thing", "-H", "x"])
    result = await runner.run(spec, spec.build(), Deadline.after(5.0))
    assert (result.outcome, result.reason) == (Outcome.FAIL, Reason.UNEXPECTED)
    assert result.message == "UNKNOWN: /nonexistent/check_thing: not found"


async def test_environment_is_minimal_plus_env_and_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plugin sees `env`, HEALTHD_TIMEOUT_MS within its budget, and not our environment."""
    monkeypatch.setenv("HEALTHD_TEST_LEAK", "leaked")
    result = await run(
        'echo "$GREETING ${HEALTHD_TEST_LEAK:-clean} $HEALTHD_TIMEOUT_MS"',
        timeout="900ms",
        env={"GREETING": "hi"},
    )
    greeting, leak, budget = result.message.split()
    assert (greeting, leak) == ("hi", "clean")
    assert 0 < int(budget) <= 900


async def test_hung_plugin_is_killed_at_the_deadline(tmp_path: Path) -> None:
    """A plugin that hangs → timeout at 300ms, not before, and the process is gone."""
    pidfile = tmp_path / "pid"
    result = await run(f"echo $$ > {pidfile}; exec sleep 30", timeout="300ms")
    assert (result.outcome, result.reason) == (Outcome.TIMEOUT, Reason.TIMEOUT)
    assert 0.28 <= result.duration <= 0.6
    assert await gone(int(pidfile.read_text()))


async def test_plugin_gets_term_first(tmp_path: Path) -> None:
    """At the deadline the plugin gets SIGTERM first, so it can clean up."""
    marker = tmp_path / "marker"
    result = await run(
        f"trap 'echo term > {marker}; exit 0' TERM; sleep 30 & wait", timeout="300ms"
    )
    assert result.outcome is Outcome.TIMEOUT
    for _ in range(50):  # the stop goes on after the answer: bounded wait for its trace
        if marker.exists():
            break
        await asyncio.sleep(0.02)
    assert marker.read_text() == "term\n"


async def test_plugin_ignoring_term_is_killed(tmp_path: Path) -> None:
    """A plugin (and its child) ignoring SIGTERM: answered at the deadline, KILLed after a grace."""
    pidfile = tmp_path / "pids"
    script = f"trap '' TERM; sleep 30 & echo $$ $! > {pidfile}; wait"
    result = await run(script, timeout="300ms")
    assert result.outcome is Outcome.TIMEOUT
    assert 0.28 <= result.duration <= 0.36  # the TERM grace is not added to the answer
    for pid in pidfile.read_text().split():
        assert await gone(int(pid))


async def test_grandchild_holding_stdout_does_not_hold_the_check() -> None:
    """`sleep 30 &` keeping stdout open: the check returns at the plugin's exit."""
    result = await run("sleep 30 & echo $!; exit 0")
    assert result.outcome is Outcome.PASS
    assert result.duration < 0.3
    assert await gone(int(result.message))  # and nothing is left running


async def test_large_output_is_bounded() -> None:
    """A megabyte of output is drained, kept to a bounded first line, and does not block."""
    result = await run("head -c 1000000 /dev/zero | tr '\\0' x; echo; exit 1")
    assert result.outcome is Outcome.WARN
    assert set(result.message) == {"x"}
    assert result.duration < 1.0


@pytest.mark.parametrize("hops", [0, 1, 3, 10, -1])
async def test_cancelled_run_leaves_nothing(tmp_path: Path, hops: int) -> None:
    """Cancelled at any point (mid-spawn too), the run ends at once and kills the plugin's group."""
    pidfile = tmp_path / "pid"
    script = f"sleep 30 & echo $! > {pidfile}.tmp; mv {pidfile}.tmp {pidfile}; wait"
    spec = ExecSpec(name="p", kind="exec", command=["sh", "-c", script])
    task = asyncio.create_task(spec.build()(Deadline.after(5.0)))
    for _ in range(hops):
        await asyncio.sleep(0)
    while hops < 0 and not pidfile.exists():  # -1: once the grandchild runs
        await asyncio.sleep(0.01)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 0.5
    if pidfile.exists():
        assert await gone(int(pidfile.read_text()))


def test_secret_env_stays_hidden() -> None:
    """env values never show in the spec's repr or dump."""
    spec = ExecSpec(name="p", kind="exec", command=["true"], env={"API_KEY": "k-123"})
    assert "k-123" not in repr(spec)
    assert "k-123" not in str(spec.model_dump())


def test_command_must_not_be_empty() -> None:
    """An empty argv is a config error."""
    with pytest.raises(ValidationError, match="command"):
        ExecSpec(name="p", kind="exec", command=[])


async def test_the_daemon_waits_for_a_cleanup_at_stop(tmp_path: Path) -> None:
    """A plugin ignoring TERM, timed out: its TERM → KILL goes on in a task the daemon's
    context holds, and engine.stop() waits for it: nothing runs after the stop."""
    pidfile = tmp_path / "pids"
    script = f"trap '' TERM; sleep 30 & echo $$ $! > {pidfile}; wait"
    spec = {"name": "plugin", "kind": "exec", "command": ["sh", "-c", script],
            "timeout": "300ms", "interval": "10s", "mode": "on_demand"}  # fmt: skip
    engine = Health(settings=settings([spec]))
    snapshot = await engine.evaluate("readiness", Deadline.after(2.0), fresh=True)
    assert snapshot.checks[0].status is Status.TIMEOUT
    assert engine.context.held  # the clean-up outlives the answer
    await engine.stop()
    assert not engine.context.held
    pids = [int(pid) for pid in pidfile.read_text().split()]
    assert all_dead(pids, within=0.5), "the plugin's group outlived engine.stop()"


def all_dead(pids: list[int], within: float) -> bool:
    """Every pid is dead within `within` s, polled without yielding to the loop: nothing
    the daemon still holds can run meanwhile, so this shows the KILL went out before stop()
    returned. (A KILLed process exits when the kernel next schedules it: on a loaded
    machine that is a moment after kill() returns, so the poll is not a bare check.)"""
    end = time.monotonic() + within
    while not all(dead(pid) for pid in pids):
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def dead(pid: int) -> bool:
    """`pid` no longer runs: missing, or a zombie (an orphan waits for init to reap it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
