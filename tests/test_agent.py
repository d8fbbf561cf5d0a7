"""DESIGN §18: the HAProxy agent-check listener, read with a raw TCP client.

In process (a Health and its Agent on a free port) for each state's line; a real
`healthd run` for the listener the daemon starts, its metric, bad peers and load.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from healthd.agent import LINGER, REASON_BYTES, Agent
from healthd.health import Health
from healthd.model import Outcome
from healthd.testing import FakeCheck
from tests.helpers import engine_with, run_now, settings
from tests.procs import Healthd

READ_TIMEOUT = 5.0


async def agent_line(port: int, send: bytes = b"") -> bytes:
    """Connect, optionally send `send`, read to EOF (what an agent-check does)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if send:
            writer.write(send)
        async with asyncio.timeout(READ_TIMEOUT):
            return await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@contextlib.asynccontextmanager
async def listening(health: Health) -> AsyncIterator[tuple[Agent, int]]:
    agent = Agent(health.store, lambda: health.settings)
    await agent.start("127.0.0.1:0")
    try:
        yield agent, int(agent.bound.rsplit(":", 1)[1])
    finally:
        await agent.close()


def two_checks(db: Outcome, cache: Outcome, message: str = "", **server: Any) -> Health:
    """Readiness: a critical `db` and a non-critical `cache`, scripted."""
    checks: list[dict[str, Any]] = [{"name": "db"}, {"name": "cache", "critical": False}]
    fakes = {"db": FakeCheck([db], message=message), "cache": FakeCheck([cache])}
    return engine_with(fakes, settings(checks, server=server))


async def test_healthy_is_up_ready_100() -> None:
    """Every check passing: `up ready 100%`."""
    health = two_checks(Outcome.PASS, Outcome.PASS)
    await run_now(health, "db")
    await run_now(health, "cache")
    async with listening(health) as (_, port):
        assert await agent_line(port) == b"up ready 100%\n"


async def test_degraded_is_up_at_the_configured_weight() -> None:
    """A failing non-critical check: `up ready <agent_degraded_weight>%` (default 50)."""
    cases: list[tuple[dict[str, Any], int]] = [({}, 50), ({"agent_degraded_weight": 30}, 30)]
    for server, weight in cases:
        health = two_checks(Outcome.PASS, Outcome.FAIL, **server)
        await run_now(health, "db")
        await run_now(health, "cache")
        async with listening(health) as (_, port):
            assert await agent_line(port) == f"up ready {weight}%\n".encode()


async def test_draining_is_drain_and_ready_again_is_up() -> None:
    """Draining: `drain`; back to ready: `up ready 100%` (which leaves HAProxy's DRAIN)."""
    health = two_checks(Outcome.PASS, Outcome.PASS)
    await run_now(health, "db")
    await run_now(health, "cache")
    async with listening(health) as (_, port):
        health.drain()
        assert await agent_line(port) == b"drain\n"
        health.ready()
        assert await agent_line(port) == b"up ready 100%\n"


async def test_unhealthy_is_down_with_the_first_failing_critical_check() -> None:
    """A failing critical check: `down #<check>: <message>` (the space before `#`)."""
    health = two_checks(Outcome.FAIL, Outcome.FAIL, message="connection refused")
    await run_now(health, "db")
    await run_now(health, "cache")
    async with listening(health) as (_, port):
        assert await agent_line(port) == b"down #db: connection refused\n"


async def test_unknown_is_down_with_no_result_yet() -> None:
    """No result yet (unknown): `down` naming the check that has none."""
    health = two_checks(Outcome.PASS, Outcome.PASS)
    async with listening(health) as (_, port):
        assert await agent_line(port) == b"down #db: unknown (no result yet)\n"


async def test_reason_is_one_line_of_at_most_100_bytes() -> None:
    """A long multi-byte message with newlines and control characters: one line, ≤100
    bytes of valid UTF-8 after `down #`."""
    message = "line one\tline two \x07 " + "é" * 200  # the runner keeps the first line
    health = two_checks(Outcome.FAIL, Outcome.PASS, message=message)
    await run_now(health, "db")
    async with listening(health) as (_, port):
        line = await agent_line(port)
    assert line.startswith(b"down #db: line one line two ")
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    reason = line[len(b"down #") : -1]
    assert len(reason) <= REASON_BYTES
    assert len(reason) >= REASON_BYTES - 1  # cut at the limit, not before (é is 2 bytes)
    reason.decode()  # never half a character


async def test_show_details_never_withholds_the_message() -> None:
    """`show_details: never`: the check's name and reason code, not its message."""
    health = two_checks(
        Outcome.FAIL, Outcome.PASS, message="10.0.0.7 said no", show_details="never"
    )
    await run_now(health, "db")
    async with listening(health) as (_, port):
        assert await agent_line(port) == b"down #db: fail (unhealthy)\n"


async def test_an_agent_connection_runs_no_check() -> None:
    """The line comes from the store: 50 connections, no check run."""
    fakes = {"db": FakeCheck([Outcome.PASS])}
    health = engine_with(fakes, settings([{"name": "db"}]))
    await run_now(health, "db")
    async with listening(health) as (agent, port):
        lines = await asyncio.gather(*(agent_line(port) for _ in range(50)))
        assert set(lines) == {b"up ready 100%\n"}
        assert fakes["db"].calls == 1
        assert agent.replies == {"up": 50, "drain": 0, "down": 0}


# --- a real healthd -----------------------------------------------------------------------------

CONFIG = """
server: {listen: "127.0.0.1:{port}", admin_listen: "127.0.0.1:{admin_port}",
         token: agent-test-token, agent_listen: "127.0.0.1:{agent_port}"}
shutdown: {drain_delay: 0s, grace: 1s}
checks:
  - {name: db, kind: heartbeat, ttl: 60s, interval: 1s, timeout: 500ms}
  - {name: cache, kind: heartbeat, ttl: 60s, interval: 1s, timeout: 500ms, critical: false}
"""
AUTH = {"Authorization": "Bearer agent-test-token"}


async def beat(h: Healthd, check: str, status: str, message: str = "") -> None:
    async with aiohttp.ClientSession(headers=AUTH) as session:
        url = h.admin_url(f"/heartbeat/{check}")
        async with session.post(url, json={"status": status, "message": message}) as resp:
            assert resp.status == 200, await resp.text()


async def admin(h: Healthd, path: str) -> None:
    async with (
        aiohttp.ClientSession(headers=AUTH) as session,
        session.post(h.admin_url(path)) as resp,
    ):
        assert resp.status == 200, await resp.text()


def rss_kib(h: Healthd) -> int:
    assert h.proc is not None
    status = Path(f"/proc/{h.proc.pid}/status").read_text()
    found = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert found is not None
    return int(found.group(1))


async def test_the_daemon_answers_each_state_and_counts_replies(tmp_path: Path) -> None:
    """`healthd run` with `server.agent_listen`: each state's line, and
    `healthd_agent_connections_total` by reply word."""
    async with Healthd(tmp_path, CONFIG) as h:
        port = h.agent_port
        assert (await agent_line(port)).startswith(b"down #db: ")  # no heartbeat yet
        await beat(h, "db", "pass")
        await beat(h, "cache", "pass")
        assert await agent_line(port) == b"up ready 100%\n"
        await beat(h, "cache", "fail", "cache cold")
        assert await agent_line(port) == b"up ready 50%\n"
        await admin(h, "/admin/drain")
        assert await agent_line(port) == b"drain\n"
        await admin(h, "/admin/ready")
        await beat(h, "db", "fail", "primary unreachable\nsecond line")
        assert await agent_line(port) == b"down #db: primary unreachable\n"
        async with aiohttp.ClientSession() as session, session.get(h.url("/metrics")) as resp:
            text = await resp.text()
    counts = dict(re.findall(r'healthd_agent_connections_total\{reply="(\w+)"\} (\S+)', text))
    assert counts == {"up": "2.0", "drain": "1.0", "down": "2.0"}


async def test_garbage_and_silent_peers_get_their_line_and_are_closed(tmp_path: Path) -> None:
    """A peer sending 4 MiB of garbage gets its line; one that never reads nor closes is
    cut after LINGER; neither grows healthd's memory."""
    async with Healthd(tmp_path, CONFIG) as h:
        await beat(h, "db", "pass")
        await beat(h, "cache", "pass")
        port = h.agent_port
        before = rss_kib(h)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        garbage = bytes(range(256)) * 4096 * 4  # 4 MiB, newlines and all
        writer.write(garbage)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        async with asyncio.timeout(READ_TIMEOUT):
            assert await reader.read() == b"up ready 100%\n"
        writer.close()
        # Silent peers: connect, never read, never close; healthd ends them after LINGER.
        started = time.monotonic()
        silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(200)]
        try:
            for sock in silent:  # the line is there (peeked: still unread)
                sock.settimeout(READ_TIMEOUT)
                assert sock.recv(64, socket.MSG_PEEK | socket.MSG_WAITALL) == b"up ready 100%\n"
            assert held(port) >= 200  # (and perhaps the garbage one, closing)
            while held(port) and time.monotonic() - started < LINGER + 10:
                await asyncio.sleep(0.02)
            ended = time.monotonic() - started
        finally:
            for sock in silent:
                sock.close()
        assert held(port) == 0
        assert ended >= LINGER - 0.1  # not cut early
        assert ended < LINGER + 3.0  # loaded machine: the timer fires late, never absent
        assert rss_kib(h) - before < 8 * 1024  # no garbage kept (4 MiB sent)


def held(port: int) -> int:
    """Connections the server side still holds on local `port` (from /proc/net/tcp)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        if int(local.split(":")[1], 16) == port and state not in ("0A", "06"):  # LISTEN, TIME_WAIT
            count += 1
    return count


async def _probe_latencies(url: str, seconds: float) -> list[float]:
    out = []
    async with aiohttp.ClientSession() as session:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t0 = time.perf_counter()
            async with session.get(url) as resp:
                assert resp.status == 200
                await resp.read()
            out.append(time.perf_counter() - t0)
            await asyncio.sleep(0.01)
    return out


@pytest.mark.slow
async def test_a_thousand_agent_connections_do_not_slow_a_probe(tmp_path: Path) -> None:
    """1,000 agent connections at once (held open, never read): /readyz answers as fast."""
    async with Healthd(tmp_path, CONFIG) as h:
        await beat(h, "db", "pass")
        await beat(h, "cache", "pass")
        quiet = await _probe_latencies(h.url("/readyz"), 1.0)

        async def one() -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", h.agent_port)
            try:
                await asyncio.sleep(1.0)  # not reading meanwhile
                async with asyncio.timeout(LINGER + 20):
                    return await reader.read()
            finally:
                writer.close()

        storm = asyncio.gather(*(one() for _ in range(1000)))
        loaded = await _probe_latencies(h.url("/readyz"), 1.5)
        lines = await storm
    assert lines.count(b"up ready 100%\n") == 1000
    # Medians on a shared 2-core machine (this test's own client opens the 1,000 sockets
    # on the same cores): the probe stays in the same few milliseconds.
    assert statistics.median(loaded) < max(0.02, 5 * statistics.median(quiet)), (quiet, loaded)
    assert max(loaded) < 0.5
