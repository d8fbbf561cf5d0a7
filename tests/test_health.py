"""The core as a library (DESIGN §15): `Health` built in code, with no file and no
process-wide side effects, and `checks.Func` in-process checks."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import healthd
from healthd import Deadline, Health, checks
from healthd.errors import ConfigError
from healthd.model import Outcome, State, Status


async def ping_ok(deadline: Deadline) -> str:
    return f"pong with {deadline.remaining() * 1000:.0f}ms left"


async def refused() -> None:
    raise ConnectionRefusedError("cache down")


async def test_health_in_code_evaluates_under_a_deadline_and_drains() -> None:
    """Two Func checks, no YAML: readiness under a 300 ms deadline, then drained."""
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    root_handlers = list(logging.getLogger().handlers)
    health = Health(
        checks=[checks.Func("db", ping_ok), checks.Func("cache", refused, critical=False)],
        shutdown={"drain_delay": "1s", "grace": "2s"},
    )
    assert health.settings.shutdown.drain_delay == 1.0
    async with health:
        started = time.monotonic()
        snap = await health.evaluate("readiness", Deadline.after(0.3), fresh=True)
        took = time.monotonic() - started
        assert took < 0.3
        assert snap.state is State.DEGRADED  # cache is not critical
        by_name = {c.name: c for c in snap.checks}
        assert by_name["db"].status is Status.PASS
        left = int(by_name["db"].last.message.split()[2].removesuffix("ms"))  # type: ignore[union-attr]
        assert 200 < left <= 300  # the check got the caller's budget, not its own timeout
        assert by_name["cache"].status is Status.FAIL
        assert by_name["cache"].last.message == "connection refused"  # type: ignore[union-attr]
        health.drain()
        assert (await health.evaluate("readiness")).state is State.DRAINING
        assert (await health.evaluate("liveness")).state is not State.DRAINING
        health.ready()
        assert (await health.evaluate("readiness")).state is State.DEGRADED
    # Nothing process-wide was touched: no signal handler, no logging handler.
    assert {s: signal.getsignal(s) for s in handlers} == handlers
    assert logging.getLogger().handlers == root_handlers


async def test_two_health_objects_in_one_process_are_independent() -> None:
    """A second Health has its own store, drain state and metrics registry."""
    one = Health(checks=[checks.Func("db", ping_ok)])
    two = Health(checks=[checks.Func("db", refused)])
    async with one, two:
        one.drain()
        a = await one.evaluate("readiness", Deadline.after(0.5), fresh=True)
        b = await two.evaluate("readiness", Deadline.after(0.5), fresh=True)
    assert a.state is State.DRAINING
    assert b.state is State.UNHEALTHY
    assert one.metrics.registry is not two.metrics.registry
    assert one.store is not two.store


def test_the_public_api_is_importable_from_the_package() -> None:
    """`healthd.Health`, `healthd.checks`, `healthd.Deadline` are the public names."""
    assert healthd.Health is Health
    assert healthd.Deadline is Deadline
    assert healthd.checks.Func is checks.Func
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = healthd.Nope


def test_specs_built_in_code_take_the_defaults_section() -> None:
    """`defaults=` applies to specs built in code, as to a file's checks."""
    health = Health(
        checks=[checks.Tcp(name="db", address="127.0.0.1:9"), {"name": "q", "kind": "loop"}],
        defaults={"interval": "30s", "timeout": "2s"},
    )
    db = health.store.spec("db")
    assert db is not None
    assert (db.interval, db.timeout) == (30.0, 2.0)
    assert health.store.spec("q") is not None
    assert health.store.spec("loop") is None  # a loop check was given: no implicit one


def test_bad_settings_in_code_are_one_line_errors() -> None:
    """A bad key or value in code is a ConfigError naming the path, as in a file."""
    with pytest.raises(ConfigError, match=r"^checks\[0\]\.timeout: must be shorter than interval"):
        Health(checks=[{"name": "db", "kind": "tcp", "address": "a:1", "timeout": "20s"}])
    with pytest.raises(ConfigError, match=r"^shutdown\.drain: unknown key"):
        Health(checks=[], shutdown={"drain": "1s"})
    with pytest.raises(ConfigError, match=r"^checks\.slow\.timeout: must be shorter than interval"):
        # valid alone; `defaults=` makes its interval shorter than its timeout
        Health(
            checks=[checks.Func("slow", ping_ok, timeout="900ms")], defaults={"interval": "500ms"}
        )
    with pytest.raises(ConfigError, match="duplicate check name 'db'"):
        Health(checks=[checks.Tcp(name="db", address="a:1"), checks.Func("db", ping_ok)])
    with pytest.raises(TypeError, match="fn must be callable"):
        checks.Func("db", "not a function")  # type: ignore[arg-type]


async def one_result(fn: Any, **common: Any) -> Any:
    health = Health(checks=[checks.Func("f", fn, **common)])
    snap = await health.evaluate("readiness", Deadline.after(common.get("budget", 1.0)), fresh=True)
    await health.stop()
    return snap.checks[0]


async def test_func_maps_returns_raises_and_warns() -> None:
    """Return = pass with that message, None = ok, raise = fail with the text, Warn = warn."""

    async def says() -> str:
        return "42 connections"

    async def nothing() -> None:
        return None

    async def raises() -> None:
        raise RuntimeError("pool exhausted")

    async def warns() -> checks.Warn:
        return checks.Warn("pool at 90%")

    async def raises_warn() -> None:
        raise checks.Warn("replica lag 3s")

    async def garbage() -> int:
        return 7

    def sync_ok() -> str:
        return "in a thread"

    assert (await one_result(says)).last.message == "42 connections"
    assert (await one_result(nothing)).last.message == "ok"
    failed = await one_result(raises)
    assert (failed.status, failed.last.message) == (Status.FAIL, "RuntimeError: pool exhausted")
    warned = await one_result(warns)
    assert (warned.last.outcome, warned.last.message) == (Outcome.WARN, "pool at 90%")
    warned = await one_result(raises_warn)
    assert (warned.last.outcome, warned.last.message) == (Outcome.WARN, "replica lag 3s")
    bad = await one_result(garbage)
    assert bad.status is Status.FAIL
    assert "returned int, not a message or None" in bad.last.message
    assert (await one_result(sync_ok)).last.message == "in a thread"


async def test_a_slow_sync_func_is_a_timeout_and_never_blocks_the_loop() -> None:
    """A plain function runs in a thread: past the deadline the run is a timeout, answered on
    time, the loop kept running meanwhile, and the thread was not waited for."""
    release = threading.Event()
    calls: list[str] = []

    def stuck() -> str:
        calls.append(threading.current_thread().name)
        release.wait(10)
        return "late"

    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.get_running_loop().create_task(tick())
    health = Health(checks=[checks.Func("stuck", stuck, timeout="200ms")])
    try:
        started = time.monotonic()
        snap = await health.evaluate("readiness", Deadline.after(1.0), fresh=True)
        took = time.monotonic() - started
        assert 0.19 <= took < 0.5  # at its timeout: not cut early, not waiting for the thread
        assert snap.checks[0].status is Status.TIMEOUT
        last = snap.checks[0].last
        assert last is not None
        assert last.message == "timeout after 200ms"
        assert ticks >= 8  # the loop ran while the function blocked its thread
        assert calls == ["healthd-func:stuck"]  # its own thread, not the default executor
        # Still stuck: the next run does not start a second thread beside it.
        again = await health.evaluate("readiness", Deadline.after(1.0), fresh=True)
        last = again.checks[0].last
        assert last is not None
        assert "still running from an earlier run" in last.message
        assert len(calls) == 1
    finally:
        release.set()
        ticker.cancel()
        await health.stop()


async def test_func_takes_retries_thresholds_and_depends_on() -> None:
    """A Func check gets the common keys: retries after a fast failure, failure_threshold,
    and depends_on (skipped while its parent fails)."""
    attempts = 0
    down_runs = 0

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionRefusedError
        return "ok on retry"

    async def goes_down() -> str:
        nonlocal down_runs
        down_runs += 1
        if down_runs > 1:
            raise ConnectionRefusedError
        return "up"

    health = Health(
        checks=[
            checks.Func("flaky", flaky, retries=1, retry_delay="10ms"),
            checks.Func("down", goes_down, failure_threshold=2),
            checks.Func("child", ping_ok, depends_on=["down"]),
        ]
    )

    async def statuses() -> dict[str, Any]:
        snap = await health.evaluate("readiness", Deadline.after(1.0), fresh=True)
        return {c.name: c for c in snap.checks}

    got = await statuses()
    assert (got["flaky"].status, got["flaky"].last.attempts) == (Status.PASS, 2)
    assert got["down"].status is Status.PASS
    got = await statuses()
    assert got["down"].status is Status.PASS  # one failure of the two it takes
    assert got["down"].last.outcome is Outcome.FAIL
    got = await statuses()
    assert got["down"].status is Status.FAIL
    got = await statuses()
    assert got["child"].status is Status.SKIPPED
    assert "depends on down" in got["child"].last.message
    await health.stop()


async def test_reload_swaps_settings_in_one_place_and_tells_listeners() -> None:
    """`reload` replaces the settings once; listeners hear of it after the store has them."""
    health = Health(checks=[checks.Func("db", ping_ok)])
    views = health.views()
    heard: list[tuple[float, bool]] = []
    health.on_reload(
        lambda s: heard.append((s.shutdown.drain_delay, views.store.has("readiness", "q")))
    )
    new = Health(checks=[checks.Func("db", ping_ok), checks.Func("q", ping_ok)],
                 shutdown={"drain_delay": "9s"}).settings  # fmt: skip
    changes = await health.reload(new)
    assert changes.added == ["q"]
    assert health.settings is new
    assert views.settings() is new
    assert heard == [(9.0, True)]


async def test_beat_posts_a_heartbeat_from_application_code() -> None:
    """`health.beat(name)` is a heartbeat from the app: posted and run at once."""
    health = Health(checks=[{"name": "worker", "kind": "heartbeat", "ttl": "5s"}])
    result = await health.beat("worker", "warn", "queue long")
    assert (result.outcome, result.message) == (Outcome.WARN, "queue long")
    with pytest.raises(ValueError, match="no heartbeat check 'nope'"):
        await health.beat("nope")
    await health.stop()


async def test_the_readme_library_example_runs(tmp_path: Path) -> None:
    """The README's `Health` example runs as printed (against the local PostgreSQL port)."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    start = readme.index("## Using healthd as a library")
    code = readme[readme.index("```python", start) + 9 : readme.index("```\n", start + 40)]
    script = tmp_path / "example.py"
    script.write_text(code)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert out.decode().startswith(("healthy {'db'", "degraded {'db'", "unhealthy {'db'"))
    assert "'cache': <Status.PASS: 'pass'>" in out.decode()
