"""Evaluation beyond thresholds against real targets (DESIGN §13): real tcp and http checks,
real listeners on loopback that count the connections they accept."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from healthd import runner
from healthd.checks.base import SpecBase
from healthd.deadline import Deadline
from healthd.evaluator import evaluate, initial
from healthd.health import Health
from healthd.model import CheckState, Outcome, Status
from healthd.web import render
from tests.conftest import free_port
from tests.helpers import run_now, settings
from tests.procs import Healthd

ANSWER_503 = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class Listener:
    """A loopback TCP listener that counts accepted connections and closes each at once
    (after answering 503 to an HTTP request, with `http=True`). `open()` and `close()`
    toggle it on a fixed port."""

    def __init__(self, port: int = 0, http: bool = False) -> None:
        self.port, self.http = port, http
        self.accepts = 0
        self.server: asyncio.Server | None = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepts += 1
        try:
            if self.http:
                await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2.0)
                writer.write(ANSWER_503)
                await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def open(self) -> Listener:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    opened = await Listener().open()
    try:
        yield opened
    finally:
        await opened.close()


def state(engine: Health, name: str) -> CheckState:
    found = engine.store.check(name)
    assert found is not None
    return found


async def until(predicate: object, timeout: float) -> float:
    """Seconds until `predicate()` held (polling every 10 ms), or `timeout` if it never did."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():  # type: ignore[operator]
            break
        await asyncio.sleep(0.01)
    return time.monotonic() - started


@pytest.mark.slow
async def test_child_of_a_down_parent_opens_no_connection(listener: Listener) -> None:
    """While db is refused, orders is skipped and never connects; once db accepts again,
    orders runs at once, long before its own 5 s interval."""
    db = Listener(free_port())
    s = settings([
        {"name": "db", "address": db.address, "interval": "200ms", "timeout": "100ms",
         "flapping": "off"},
        {"name": "orders", "address": listener.address, "depends_on": ["db"],
         "interval": "5s", "timeout": "1s"},
    ])  # fmt: skip
    engine = Health(settings=s)
    await run_now(engine, "db")  # refused: known down before orders' first run
    engine.start()
    try:
        await asyncio.sleep(1.5)  # orders' first run (within 1 s) is due and skipped
        orders = state(engine, "orders")
        assert listener.accepts == 0
        assert orders.status is Status.SKIPPED
        assert orders.last is not None
        assert orders.last.message == "skipped: depends on db (refused)"
        await db.open()
        took = await until(lambda: listener.accepts > 0, 3.0)
        assert listener.accepts == 1, f"orders did not run within {took:.2f}s of db's recovery"
        assert took < 3.0  # db's interval (≤ 0.22 s) and a run: not orders' 5 s
        await until(lambda: state(engine, "orders").status is Status.PASS, 1.0)
        assert state(engine, "orders").status is Status.PASS
    finally:
        await engine.stop()
        await db.close()


async def test_refused_then_accepting_passes_on_the_second_attempt() -> None:
    """A port refused on the first attempt and listening before the retry passes with
    `attempts: 2`, inside the run's budget."""
    target = Listener(free_port())
    spec: SpecBase = settings([
        {"name": "db", "address": target.address, "retries": 2, "retry_delay": "100ms",
         "timeout": "1s", "flapping": "off"},
    ]).checks[0]  # fmt: skip

    async def open_then_sleep(seconds: float) -> None:
        await target.open()  # after the first (refused) attempt, before the retry
        await asyncio.sleep(seconds)

    try:
        result = await runner.run(spec, spec.build(), Deadline.after(1.0), sleep=open_then_sleep)
        # The check's connect completes before the server's accept callback has run (both
        # on this loop): let the listener count it.
        await until(lambda: target.accepts > 0, 1.0)
    finally:
        await target.close()
    assert (result.outcome, result.attempts, target.accepts) == (Outcome.PASS, 2, 1)
    assert 0.1 <= result.duration < 1.0
    view = render.check_view(evaluate(initial(spec), result, 1, 1))
    assert json.loads(json.dumps(view))["attempts"] == 2


async def test_retries_stay_inside_the_budget(refused_port: int) -> None:
    """A port that stays refused: attempts stop while the time left still covers the delay
    plus the last attempt, so the result comes back within the timeout."""
    spec: SpecBase = settings([
        {"name": "db", "address": f"127.0.0.1:{refused_port}", "retries": 10,
         "retry_delay": "150ms", "timeout": "500ms", "flapping": "off"},
    ]).checks[0]  # fmt: skip
    started = time.monotonic()
    result = await runner.run(spec, spec.build(), Deadline.after(5.0))
    elapsed = time.monotonic() - started
    assert result.outcome is Outcome.FAIL
    # attempts at ~0, 150, 300 and 450 ms; after that 50 ms are left, less than 150 ms + 1 ms
    assert 2 <= result.attempts <= 4
    assert elapsed < 0.5


async def test_a_port_toggled_every_run_flaps_and_stops_once_steady() -> None:
    """Up, down, up, …: flapping (held at fail) within `window` runs; then, listening
    steadily, it stops flapping within `window` more runs and passes."""
    target = Listener(free_port())
    s = settings([
        {"name": "db", "address": target.address, "interval": "1s", "timeout": "500ms",
         "mode": "on_demand", "flapping": {"window": 10, "high": "50%", "low": "25%"}},
    ])  # fmt: skip
    engine = Health(settings=s)
    seen = []
    try:
        for run in range(10):
            if run % 2 == 0:
                await target.open()
            await run_now(engine, "db")
            await target.close()
            seen.append(state(engine, "db"))
        assert target.accepts == 5
        assert [st.last.outcome for st in seen if st.last] == [Outcome.PASS, Outcome.FAIL] * 5
        began = next(i for i, st in enumerate(seen) if st.flapping)
        assert began < 10
        assert all(st.status is Status.FAIL for st in seen[began:])
        await target.open()
        steady = []
        for _ in range(10):
            await run_now(engine, "db")
            steady.append(state(engine, "db"))
        stopped = next(i for i, st in enumerate(steady) if not st.flapping)
        assert all(st.status is Status.FAIL for st in steady[:stopped])
        assert all(st.status is Status.PASS for st in steady[stopped:])
        assert target.accepts == 15
    finally:
        await engine.stop()
        await target.close()


@pytest.mark.slow
async def test_down_interval_spares_a_dead_target() -> None:
    """With `down_interval: 2s`, a dead HTTP target sees at most 6 requests in 10 s (one
    at start, then one every 2 s ± 10 % jitter), where `interval: 500ms` would make ~20."""
    target = await Listener(http=True).open()
    s = settings([
        {"name": "api", "kind": "http", "url": f"http://{target.address}/", "interval": "500ms",
         "timeout": "200ms", "down_interval": "2s"},
    ])  # fmt: skip
    engine = Health(settings=s)
    engine.start()
    try:
        await asyncio.sleep(10.0)
    finally:
        await engine.stop()
        await target.close()
    assert state(engine, "api").status is Status.FAIL
    assert 3 <= target.accepts <= 6, target.accepts


@pytest.mark.slow
async def test_a_real_daemon_shows_skipped_and_flapping(
    tmp_path: Path, blackhole: tuple[str, int], listener: Listener
) -> None:
    """Through a real healthd: `?verbose` prints `[-]orders skipped: depends on db (timeout)`,
    JSON `"status": "skipped"` and `"flapping"`, /metrics the skipped status; orders, whose
    target is up, is not connected to once db is known to hang."""
    host, port = blackhole
    config = f"""
server: {{listen: "127.0.0.1:{{port}}", admin_listen: "127.0.0.1:{{admin_port}}",
          show_details: always}}
checks:
  - {{name: db, kind: tcp, address: "{host}:{port}", interval: 300ms, timeout: 100ms}}
  - {{name: orders, kind: tcp, address: "{listener.address}", depends_on: [db],
      interval: 300ms, timeout: 100ms}}
"""
    async with Healthd(tmp_path, config) as daemon, aiohttp.ClientSession() as http:
        url = daemon.url("/readyz?verbose")
        deadline = time.monotonic() + 5.0
        text = ""
        while time.monotonic() < deadline and "orders skipped" not in text:
            async with http.get(url) as response:
                text = await response.text()
            await asyncio.sleep(0.1)
        assert "[-]orders skipped: depends on db (timeout)" in text, text
        before = listener.accepts  # runs before db's first result (db unknown) may connect
        await asyncio.sleep(1.0)  # three more intervals of orders, all skipped
        assert "[-]db timeout after 100ms" in text
        async with http.get(daemon.url("/health")) as response:
            body = await response.json()
        assert body["checks"]["orders"]["status"] == "skipped"
        assert body["checks"]["orders"]["attempts"] == 0
        assert body["checks"]["db"]["flapping"] is False
        async with http.get(daemon.url("/metrics")) as response:
            metrics = await response.text()
        assert 'healthd_check_status{check="orders",kind="tcp",status="skipped"} 1.0' in metrics
        assert 'healthd_check_flapping{check="db"} 0.0' in metrics
        assert 'healthd_check_attempts_total{check="db",kind="tcp"}' in metrics
        assert listener.accepts == before
