"""DESIGN §6 on a real `healthd run` process with real signals: drain, grace, exit codes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from tests.procs import Healthd

pytestmark = pytest.mark.slow

DRAIN, GRACE = 1.0, 2.0
CONFIG = f"""
server: {{listen: "127.0.0.1:{{port}}", admin_listen: "127.0.0.1:{{admin_port}}"}}
shutdown: {{drain_delay: {DRAIN}s, grace: {GRACE}s}}
checks:  # the pause below is lag the loop check sees: it may warn, never fail, and it
  # may leave its last result older than 3 intervals when the daemon resumes (max_age)
  - {{name: loop, kind: loop, interval: 200ms, timeout: 100ms, fail_lag: 5s, max_age: 5s}}
"""
# The daemon is stopped this long around the end of drain_delay (the 100 ms, and
# room for a loaded test process to wake late on either side).
PAUSE = 0.5


@dataclass(frozen=True, slots=True)
class Hit:
    path: str
    sent: float  # wall clock when the request's headers went out (or when it was tried)
    done: float
    status: int | None = None
    error: str = ""
    connection: str = ""


async def wait_line(h: Healthd, text: str, timeout: float = 5.0) -> str:
    """The first stderr line containing `text` (bounded wait)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for line in h.lines:
            if text in line:
                return line
        await asyncio.sleep(0.01)
    raise AssertionError(f"no line with {text!r} in:\n" + "\n".join(h.lines))


async def wait_ready(h: Healthd, path: str = "/readyz", timeout: float = 5.0) -> None:
    async with aiohttp.ClientSession() as session:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            async with session.get(h.url(path)) as resp:
                if resp.status == 200:
                    return
            await asyncio.sleep(0.02)
    raise AssertionError(f"{path} never answered 200")


def closed_at(h: Healthd) -> float:
    """The wall-clock instant the daemon logged for closing its listeners."""
    line = next(x for x in h.lines if "listeners closed at " in x)
    stamp = line.split("listeners closed at ", 1)[1].split(";", 1)[0]
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


async def hammer(url: str, path: str, stop: asyncio.Event, hits: list[Hit]) -> None:
    """One client in a tight loop on its own session (keep-alive pool); every answer is read.

    A request's `sent` is when its headers were written: a connect refused after the close
    never gets that far, and keeps the time it was tried.
    """
    sent = [0.0]

    async def headers_sent(*_: object) -> None:
        sent[0] = time.time()

    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(headers_sent)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        while not stop.is_set():
            sent[0] = tried = time.time()
            try:
                async with session.get(url + path) as resp:
                    json.loads(await resp.read())  # a full answer, or ValueError/payload error
                    conn = resp.headers.get("Connection", "")
                    hits.append(Hit(path, sent[0], time.time(), resp.status, "", conn))
            except (aiohttp.ClientError, ValueError, OSError) as exc:
                hits.append(Hit(path, max(sent[0], tried), time.time(), None, type(exc).__name__))
                await asyncio.sleep(0.005)  # refused after the close: do not spin


async def written_while_stopped(port: int, path: str) -> tuple[float, int]:
    """Connect and write one request now (the kernel queues it while the daemon is
    stopped); then wait for the answer: (when it was written, its status)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await writer.drain()
        written = time.time()
        line = await asyncio.wait_for(reader.readline(), DRAIN + GRACE + 3)
        return written, int(line.split()[1]) if line else 0
    finally:
        writer.close()


async def test_sigterm_under_load_drains_without_dropping(tmp_path: Path) -> None:
    """Under load, paused around the close: readiness 503 at once, liveness 200, every request
    sent before the logged close answered, exit 0."""
    async with Healthd(tmp_path, CONFIG) as h:
        await wait_ready(h)
        stop, hits = asyncio.Event(), list[Hit]()
        base = h.url("")
        paths = ["/readyz"] * 6 + ["/livez"] * 2
        clients = [asyncio.create_task(hammer(base, p, stop, hits)) for p in paths]
        await asyncio.sleep(0.5)
        t_sig = time.time()
        h.signal(signal.SIGTERM)
        # Descheduled around the close, as on a loaded node: connections queue in the kernel.
        await asyncio.sleep(DRAIN - PAUSE / 2)
        h.signal(signal.SIGSTOP)
        queued = [asyncio.create_task(written_while_stopped(h.port, p)) for p in paths * 3]
        await asyncio.sleep(PAUSE)
        t_cont = time.time()
        h.signal(signal.SIGCONT)
        code = await h.wait(DRAIN + GRACE + 3)
        t_exit = time.time()
        stop.set()
        await asyncio.gather(*clients)

    close = closed_at(h)
    before = [x for x in hits if x.done < t_sig]
    assert len([x for x in before if x.sent >= t_sig - 0.5]) >= 100  # hundreds per second
    assert all(x.status == 200 for x in before)
    ready = [x for x in hits if x.path == "/readyz" and x.status is not None]
    first_503 = min(x.done for x in ready if x.status == 503)
    assert first_503 - t_sig < 0.05
    assert all(x.status == 503 for x in ready if x.sent > t_sig + 0.05)
    answers = [await q for q in queued]
    assert all(written < t_cont for written, _ in answers)  # connected and sent while stopped
    assert [status for _, status in answers] == [
        503 if p == "/readyz" else 200 for p in paths * 3
    ]  # every one read and answered after the daemon resumed, though the close was due
    assert close > t_cont  # the pause covered the end of drain_delay
    # Nothing accepted is lost: no error for a request sent before the close, except a
    # connect refused at the boundary itself (its SYN left after the close though the
    # client stamped it just before; the two processes stamp apart on a loaded machine).
    boundary = [x for x in hits if x.error == "ClientConnectorError" and x.done >= close - 0.05]
    assert [x for x in hits if x.error and x.sent < close and x not in boundary] == []
    assert [x for x in hits if x.error and x.sent >= close]  # and the listener did close
    live = [x for x in hits if x.path == "/livez" and x.sent < close]
    assert live
    assert all(x.status == 200 for x in live), [x for x in live if x.status != 200][:5]
    assert close >= t_sig + DRAIN
    assert max(x.done for x in hits if x.status is not None) >= t_sig + DRAIN * 0.95
    assert all(x.connection == "close" for x in hits if x.status == 503)
    assert not [x for x in hits if x.error in ("ClientPayloadError", "ValueError")]
    assert code == 0
    assert DRAIN <= t_exit - t_sig <= DRAIN + GRACE + 0.5
    assert any("healthd exited: SIGTERM" in line and "exit 0" in line for line in h.lines)


async def test_second_signal_exits_at_once_with_1(tmp_path: Path) -> None:
    """A second SIGTERM during the drain exits immediately with code 1."""
    config = CONFIG.replace(f"drain_delay: {DRAIN}s", "drain_delay: 10s")
    async with Healthd(tmp_path, config) as h:
        h.signal(signal.SIGTERM)
        await wait_line(h, "SIGTERM: draining")
        t_sig = time.monotonic()
        h.signal(signal.SIGINT)
        code = await h.wait(5)
        elapsed = time.monotonic() - t_sig
    assert code == 1
    assert elapsed < 0.5
    assert any("second SIGINT while shutting down: exiting at once" in x for x in h.lines)


async def test_grace_cancels_a_request_still_running(
    tmp_path: Path, blackhole: tuple[str, int]
) -> None:
    """A probe still running at the end of grace is cancelled and logged; exit is still 0."""
    host, port = blackhole
    config = f"""
server: {{listen: "127.0.0.1:{{port}}", admin_listen: "127.0.0.1:{{admin_port}}"}}
shutdown: {{drain_delay: 300ms, grace: 500ms}}
checks:
  - {{name: loop, kind: loop, interval: 200ms, timeout: 100ms}}
  - {{name: hang, kind: tcp, address: "{host}:{port}", mode: on_demand,
      interval: 60s, timeout: 30s}}
"""
    async with Healthd(tmp_path, config) as h, aiohttp.ClientSession() as session:
        slow = asyncio.create_task(session.get(h.url("/readyz/hang?timeout=20s")))
        await asyncio.sleep(0.3)  # the request is in flight, waiting on the blackhole
        t_sig = time.monotonic()
        h.signal(signal.SIGTERM)
        code = await h.wait(5)
        elapsed = time.monotonic() - t_sig
        with pytest.raises(aiohttp.ClientError):
            await slow
    assert code == 0
    assert 0.8 <= elapsed <= 0.8 + 1.5
    line = await wait_line(h, "grace over: cancelling")
    assert "GET /readyz/hang?timeout=20s after" in line
    assert any("1 cancelled at the end of grace; exit 0" in x for x in h.lines)


async def test_sigusr1_logs_a_diagnostic_dump(tmp_path: Path, blackhole: tuple[str, int]) -> None:
    """SIGUSR1 logs one line: every check, in-flight checks with their age, the task count."""
    host, port = blackhole
    config = CONFIG + (
        f'  - {{name: hang, kind: tcp, address: "{host}:{port}", mode: on_demand, '
        "interval: 60s, timeout: 30s, critical: false}\n"
    )
    async with Healthd(tmp_path, config) as h, aiohttp.ClientSession() as session:
        slow = asyncio.create_task(session.get(h.url("/readyz/hang?timeout=5s")))
        await asyncio.sleep(0.3)
        h.signal(signal.SIGUSR1)
        line = await wait_line(h, "diagnostics: ")
        slow.cancel()
        await asyncio.gather(slow, return_exceptions=True)
    dump = json.loads(line.split("diagnostics: ", 1)[1])
    assert set(dump["checks"]) == {"loop", "hang"}
    assert dump["inflight_checks"]["hang"]["age_ms"] >= 200
    assert dump["requests_in_flight"][0]["request"] == "GET /readyz/hang?timeout=5s"
    assert dump["tasks"] > 0
    assert dump["draining"] is False


async def test_admin_listener_off_without_token(tmp_path: Path) -> None:
    """No token configured: the admin listener is not started, and the log says so."""
    async with Healthd(tmp_path, CONFIG) as h:
        assert any("admin API off: server.token is empty" in x for x in h.lines)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientConnectorError):
                await session.post(h.admin_url("/admin/drain"))


async def test_a_request_in_flight_at_the_close_that_ends_within_grace_is_answered(
    tmp_path: Path,
) -> None:
    """A fresh probe waiting on a slow check when the listeners close still gets its 200."""
    slow = await asyncio.start_server(slow_accept, "127.0.0.1", 0)
    port = slow.sockets[0].getsockname()[1]
    config = f"""
server: {{listen: "127.0.0.1:{{port}}", admin_listen: "127.0.0.1:{{admin_port}}"}}
shutdown: {{drain_delay: 200ms, grace: 3s}}
checks:
  - {{name: loop, kind: loop, interval: 200ms, timeout: 100ms}}
  - {{name: slow, kind: http, url: "http://127.0.0.1:{port}/", mode: on_demand,
      interval: 10s, timeout: 5s}}
"""
    try:
        async with Healthd(tmp_path, config) as h, aiohttp.ClientSession() as session:
            probe = asyncio.create_task(session.get(h.url("/readyz/slow?timeout=4s")))
            await asyncio.sleep(0.2)  # in flight, waiting on the slow server's answer
            t_sig = time.monotonic()
            h.signal(signal.SIGTERM)
            resp = await probe
            answered = time.monotonic() - t_sig
            assert resp.status == 503  # draining; the check itself passed after 1 s
            body = await resp.json()
            code = await h.wait(5)
    finally:
        slow.close()
    assert body == {"status": "draining"}
    assert 0.6 <= answered <= 2.5  # after the close (200 ms), when the check answered (~1 s)
    assert code == 0
    close_line = await wait_line(h, "listeners closed at ")
    assert "1 requests in flight" in close_line
    assert any("0 cancelled at the end of grace; exit 0" in x for x in h.lines)


async def slow_accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An HTTP server that answers 200 after one second."""
    await reader.readuntil(b"\r\n\r\n")
    await asyncio.sleep(1.0)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    await writer.drain()
    writer.close()


async def test_sigint_first_drains_like_sigterm(tmp_path: Path) -> None:
    """SIGINT as the first signal: draining (readiness 503, liveness 200), then exit 0."""
    config = CONFIG.replace(f"drain_delay: {DRAIN}s", "drain_delay: 500ms")
    async with Healthd(tmp_path, config) as h:
        await wait_ready(h)
        await wait_ready(h, "/livez")
        h.signal(signal.SIGINT)
        await wait_line(h, "SIGINT: draining")
        async with aiohttp.ClientSession() as session:
            async with session.get(h.url("/readyz")) as ready:
                assert ready.status == 503
            async with session.get(h.url("/livez")) as live:
                assert live.status == 200
        code = await h.wait(5)
    assert code == 0
    assert any("healthd exited: SIGINT" in line and "exit 0" in line for line in h.lines)


async def test_background_checks_are_cancelled_at_shutdown(tmp_path: Path) -> None:
    """A background run hung on a silent server (30 s timeout) is cancelled at exit: the
    daemon exits after drain_delay, and the server sees the check's connection close."""
    closed = asyncio.Event()
    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read()  # returns at EOF: the check's connection was closed
        closed.set()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = f"""
server: {{listen: "127.0.0.1:{{port}}", admin_listen: "127.0.0.1:{{admin_port}}"}}
shutdown: {{drain_delay: 300ms, grace: 10s}}
checks:
  - {{name: loop, kind: loop, interval: 200ms, timeout: 100ms}}
  - {{name: hung, kind: http, url: "http://127.0.0.1:{port}/", interval: 60s, timeout: 30s,
      critical: false}}
"""
    try:
        async with Healthd(tmp_path, config) as h:
            end = time.monotonic() + 5
            while not held and time.monotonic() < end:
                await asyncio.sleep(0.02)
            assert held  # the background run is in flight on the silent server
            t_sig = time.monotonic()
            h.signal(signal.SIGTERM)
            code = await h.wait(5)
            elapsed = time.monotonic() - t_sig
            await asyncio.wait_for(closed.wait(), 2.0)
    finally:
        for writer in held:
            writer.close()
        server.close()
    assert code == 0
    assert 0.3 <= elapsed < 2.0  # not the check's 30 s, nor grace's 10 s


async def test_signals_during_the_exit_never_kill_the_daemon(tmp_path: Path) -> None:
    """SIGUSR1 and SIGHUP every 2 ms from SIGTERM until the process is gone: exit code 0,
    not the default action's -10 (they used to kill it in the last second of the exit)."""
    config = CONFIG.replace(f"drain_delay: {DRAIN}s", "drain_delay: 200ms")
    async with Healthd(tmp_path, config) as h:
        assert h.proc is not None
        h.signal(signal.SIGTERM)
        await wait_line(h, "SIGTERM: draining")
        end = time.monotonic() + 10
        # os.kill, not Popen.send_signal: that one polls, and reaping the child behind
        # asyncio's back makes it report 255.
        with contextlib.suppress(ProcessLookupError):
            while h.proc.returncode is None and time.monotonic() < end:
                os.kill(h.proc.pid, signal.SIGUSR1)
                os.kill(h.proc.pid, signal.SIGHUP)
                await asyncio.sleep(0.002)
        code = await h.wait(5)
    assert code == 0, "\n".join(h.lines)
    assert any("healthd exited: SIGTERM" in line for line in h.lines)
