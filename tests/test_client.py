"""DESIGN §18: healthd.client's Watch and Gate against a real `healthd run`.

The upstream's state is steered with heartbeats (`POST /heartbeat/db`); a dropped
stream is a TCP forwarder cut under the client (tests/tcpproxy.py); a paused healthd is
SIGSTOP. A protected service is a real aiohttp server counting its requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from healthd.client import ClientError, Event, Gate, NotHealthd, Unavailable, Watch
from healthd.client.watch import backoff
from tests.procs import Healthd
from tests.tcpproxy import proxy
from tests.test_agent import beat

TOKEN = "agent-test-token"  # tests.test_agent.beat's
KEEPALIVE = 0.5
CONFIG = f"""
server: {{listen: "127.0.0.1:{{port}}", admin_listen: "127.0.0.1:{{admin_port}}",
         token: {TOKEN}, watch_keepalive: {KEEPALIVE}s}}
shutdown: {{drain_delay: 0s, grace: 1s}}
checks:
  - {{name: db, kind: heartbeat, ttl: 60s, interval: 1s, timeout: 500ms}}
"""
FAST = (0.02, 0.2)  # reconnect backoff for tests: first ceiling, cap


async def next_event(events: AsyncIterator[Event], timeout: float = 5.0) -> Event:
    async with asyncio.timeout(timeout):
        return await anext(events)


@contextlib.asynccontextmanager
async def healthy(tmp_path: Path) -> AsyncIterator[Healthd]:
    async with Healthd(tmp_path, CONFIG) as h:
        await beat(h, "db", "pass")
        yield h


async def test_a_dropped_stream_resumes_without_losing_an_event(tmp_path: Path) -> None:
    """Cut under the client while three transitions happen: one `unknown`, then on
    reconnect (Last-Event-ID) the three missed events in order, and no new snapshot."""
    async with healthy(tmp_path) as h, proxy(h.port) as cut:
        watch = Watch(cut.url(), TOKEN, backoff=FAST)
        events = aiter(watch)
        try:
            snapshot = await next_event(events)
            assert snapshot.kind == "snapshot"
            assert snapshot.data["checks"]["db"]["status"] == "pass"
            assert watch.state() == "healthy"
            cut.cut(refuse=True)
            assert (await next_event(events)).kind == "unknown"
            assert watch.state() == "unknown"
            for status in ("fail", "pass", "fail"):
                await beat(h, "db", status)
            cut.refusing = False
            seen: dict[str, list[str]] = {"check": [], "group": []}
            while len(seen["check"]) < 3 or len(seen["group"]) < 3:
                event = await next_event(events)
                assert event.kind in seen, event  # resumed: no snapshot
                if event.kind == "check":
                    seen["check"].append(event.data["status"])
                elif event.data["name"] == "readiness":
                    seen["group"].append(event.data["state"])
            assert seen == {
                "check": ["fail", "pass", "fail"],
                "group": ["unhealthy", "healthy", "unhealthy"],
            }
            assert cut.accepted >= 2
            assert watch.state() == "unhealthy"
        finally:
            await events.aclose()  # type: ignore[attr-defined]


async def test_a_paused_healthd_turns_unknown_within_twice_the_keepalive(tmp_path: Path) -> None:
    """SIGSTOP: `unknown` after the stream's silence passes 2 x keep-alive (not before
    one keep-alive, not after the bound plus scheduling slack); SIGCONT: known again."""
    async with healthy(tmp_path) as h:
        watch = Watch(h.url(""), backoff=FAST)
        events = aiter(watch)
        try:
            assert (await next_event(events)).kind == "snapshot"
            assert watch.keepalive == KEEPALIVE  # announced by the stream
            await asyncio.sleep(KEEPALIVE * 1.5)  # a keep-alive or two went by
            h.signal(signal.SIGSTOP)
            stopped = time.monotonic()
            event = await next_event(events, timeout=10)
            took = time.monotonic() - stopped
            assert event.kind == "unknown"
            assert "silent" in event.data["message"]
            assert KEEPALIVE - 0.05 <= took <= 2 * KEEPALIVE + 1.0, took
            assert watch.state() == "unknown"
            h.signal(signal.SIGCONT)
            # Resumed with Last-Event-ID: nothing was missed, so no event, but known again.
            pump = asyncio.ensure_future(anext(events))
            end = time.monotonic() + 10
            while watch.state() != "healthy":
                assert time.monotonic() < end, watch.reason
                await asyncio.sleep(0.01)
            pump.cancel()
            await asyncio.wait([pump])
        finally:
            h.signal(signal.SIGCONT)
            await events.aclose()  # type: ignore[attr-defined]


@contextlib.asynccontextmanager
async def service(delay: float = 0.0) -> AsyncIterator[tuple[str, list[float]]]:
    """A real aiohttp server: its URL and the times of the requests it got."""
    hits: list[float] = []

    async def handle(request: web.Request) -> web.Response:
        hits.append(time.monotonic())
        await asyncio.sleep(delay)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/", hits
    finally:
        await runner.cleanup()


def state_of(gate: Gate) -> str:
    return gate.state  # (read again: mypy would keep the value it narrowed to)


async def wait_state(gate: Gate, state: str, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while gate.state != state:
        assert time.monotonic() < end, (gate.state, gate.reason)
        await asyncio.sleep(0.005)


async def test_the_gate_fails_fast_while_unhealthy_and_closes_after_recovery(
    tmp_path: Path,
) -> None:
    """Unhealthy: 1,000 calls raise Unavailable, p99 under 1 ms, not one request sent.
    Recovered: one trial call (a second meanwhile is refused), then closed."""
    async with (
        healthy(tmp_path) as h,
        service(delay=0.3) as (url, hits),
        aiohttp.ClientSession() as session,
    ):
        gate = Gate(h.url(""), backoff=FAST)
        await gate.start()
        try:
            assert gate.state == "closed"
            await beat(h, "db", "fail", "primary down")
            await wait_state(gate, "open")
            assert "readiness is unhealthy" in gate.reason
            took = []
            for _ in range(1000):
                started = time.perf_counter()
                with pytest.raises(Unavailable):
                    async with gate:
                        await session.get(url)
                took.append(time.perf_counter() - started)
            took.sort()
            assert took[989] < 0.001, took[989]  # p99
            assert hits == []  # nothing reached the service
            await beat(h, "db", "pass")
            await wait_state(gate, "half_open")

            async def call() -> int:
                async with gate, session.get(url) as resp:
                    return resp.status

            trial = asyncio.create_task(call())
            await asyncio.sleep(0.05)  # the trial is in flight
            with pytest.raises(Unavailable, match="trial call is in flight"):
                await call()
            assert await trial == 200
            assert gate.state == "closed"
            assert list(await asyncio.gather(call(), call())) == [200, 200]
            assert len(hits) == 3
        finally:
            await gate.close()


async def test_failed_calls_open_the_gate_for_the_cooldown(tmp_path: Path) -> None:
    """`failures` failed calls within `window`: open for `cooldown` though the upstream is
    healthy, then a trial call closes it; the upstream's readiness never changes."""
    async with healthy(tmp_path) as h:
        gate = Gate(h.url(""), failures=3, window=5.0, cooldown=0.5, count=ConnectionError)
        await gate.start()
        try:
            for _ in range(2):
                with pytest.raises(ConnectionError):
                    async with gate:
                        raise ConnectionRefusedError("no")
            with pytest.raises(KeyError):  # not counted
                async with gate:
                    raise KeyError("x")
            assert gate.state == "closed"
            with pytest.raises(ConnectionError):
                async with gate:
                    raise ConnectionResetError("reset")
            assert state_of(gate) == "open"
            opened = time.monotonic()
            with pytest.raises(Unavailable, match="3 failed calls within 5s"):
                async with gate:
                    pass
            await asyncio.sleep(0.5 - (time.monotonic() - opened) + 0.02)
            async with gate:  # the trial
                pass
            assert state_of(gate) == "closed"
            assert gate.upstream == "healthy"  # nothing went back to healthd
            async with aiohttp.ClientSession() as session, session.get(h.url("/readyz")) as r:
                assert r.status == 200
        finally:
            await gate.close()


async def test_a_url_that_is_not_healthd_is_a_one_line_error(tmp_path: Path) -> None:
    """A plain web server: `NotHealthd` naming the URL and what it answered, one line."""
    async with service() as (url, _):
        watch = Watch(url)
        with pytest.raises(NotHealthd) as caught:
            async for _ in watch:
                pass
        message = str(caught.value)
        assert message.startswith(f"{url}watch: not a healthd /watch stream (404 Not Found")
        assert "\n" not in message
        gate = Gate(url)
        with pytest.raises(NotHealthd):
            await gate.start(within=5)
        await gate.close()


async def test_malformed_events_are_skipped_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Bad JSON, an unknown kind, a missing field: each skipped, one warning in all, and
    the good events around them come through."""
    frames = [
        b": keepalive 5\n\n",
        b'id: 1\nevent: snapshot\ndata: {"groups": {"readiness": "healthy"}}\n\n',
        b"id: 2\nevent: group\ndata: {not json\n\n",
        b'id: 3\nevent: novel\ndata: {"name": "x"}\n\n',
        b'id: 4\nevent: group\ndata: {"name": "readiness"}\n\n',
        b'id: 5\nevent: group\ndata: {"name": "readiness", "state": "draining"}\n\n',
    ]

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for frame in frames:
            await response.write(frame)
        await asyncio.sleep(30)
        return response

    app = web.Application()
    app.router.add_get("/watch", stream)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        watch = Watch(f"http://127.0.0.1:{runner.addresses[0][1]}")
        events = aiter(watch)
        with caplog.at_level(logging.WARNING, logger="healthd.client"):
            first, second = await next_event(events), await next_event(events)
        await events.aclose()  # type: ignore[attr-defined]
    finally:
        await runner.cleanup()
    assert (first.kind, first.id) == ("snapshot", "1")
    assert (second.kind, second.id, second.data["state"]) == ("group", "5", "draining")
    assert watch.malformed == 3
    assert watch.keepalive == 5.0
    warnings = [r for r in caplog.records if r.name == "healthd.client"]
    assert len(warnings) == 1
    assert "malformed event" in warnings[0].getMessage()


def test_backoff_is_jittered_exponential_and_capped() -> None:
    """Each delay is in [0, min(cap, first x 2^attempt)]; they vary; none passes the cap."""
    for attempt in range(12):
        delays = [backoff(attempt, 0.1, 2.0) for _ in range(200)]
        assert all(0.0 <= d <= min(2.0, 0.1 * 2**attempt) for d in delays)
        assert len(set(delays)) > 100
    assert max(backoff(60, 0.1, 2.0) for _ in range(200)) > 1.0  # reaches toward the cap


async def test_a_gate_on_one_check_follows_that_check(tmp_path: Path) -> None:
    """`Gate(url, check="db", token=…)`: open while db fails, closed (after a trial) when
    it passes; without the token healthd refuses the stream: a one-line ClientError."""
    async with healthy(tmp_path) as h:
        refused = Gate(h.url(""), check="db")
        with pytest.raises(ClientError, match=r"403 Forbidden: \?check: check details") as caught:
            await refused.start(within=5)
        assert "\n" not in str(caught.value)
        await refused.close()
        gate = Gate(h.url(""), check="db", token=TOKEN, backoff=FAST)
        await gate.start()
        try:
            assert (gate.state, gate.upstream) == ("closed", "pass")
            await beat(h, "db", "fail", "gone")
            await wait_state(gate, "open")
            assert gate.reason.endswith("check db is fail")
            await beat(h, "db", "pass")
            await wait_state(gate, "half_open")
            async with gate:
                pass
            assert state_of(gate) == "closed"
        finally:
            await gate.close()
