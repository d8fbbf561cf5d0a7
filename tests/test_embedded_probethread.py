"""The embedded probes on a thread and event loop of their own (embed/probethread.py):
they answer while the app's loop is blocked, follow the drain at once, and send what needs
a run to the app's loop. Real aiohttp servers, real connections from other threads."""

from __future__ import annotations

import asyncio
import http.client
import threading
import time

import pytest
from aiohttp import web

import healthd.aiohttp
from healthd import Health, checks
from healthd.embed.aiohttp import EMBEDDED
from healthd.embed.probethread import listen_of
from healthd.errors import ConfigError
from tests.conftest import free_port


def fetch(port: int, path: str = "/readyz") -> tuple[int, str, float]:
    """A blocking GET on a fresh connection (from any thread): status, body, seconds."""
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode(), time.monotonic() - started
    finally:
        conn.close()


async def started(health: Health, port: int) -> web.AppRunner:
    app = web.Application()
    healthd.aiohttp.setup(app, health, listen=f"127.0.0.1:{port}")
    runner = web.AppRunner(app)
    await runner.setup()  # the app's startup: health and the probe thread start
    return runner


async def until(port: int, status: int, path: str = "/readyz") -> None:
    end = time.monotonic() + 10
    while (await asyncio.to_thread(fetch, port, path))[0] != status:
        assert time.monotonic() < end, f"{path} never answered {status}"
        await asyncio.sleep(0.05)


async def test_the_probe_port_answers_while_the_apps_loop_is_blocked() -> None:
    """The app's loop blocked for 1 s: five probes on the probe port answer meanwhile,
    each in well under the block."""
    health = Health(checks=[checks.Func("db", lambda: None, interval="1s", timeout="500ms")])
    port = free_port()
    runner = await started(health, port)
    try:
        await until(port, 200)
        go, answers = threading.Event(), list[tuple[int, str, float]]()

        def probe_while_blocked() -> None:
            go.wait(5)
            answers.extend(fetch(port) for _ in range(5))

        prober = threading.Thread(target=probe_while_blocked)
        prober.start()
        go.set()
        blocked_at = time.monotonic()
        time.sleep(1.0)
        prober.join(10)
        assert len(answers) == 5
        assert all(status == 200 for status, _, _ in answers)
        assert sum(took for _, _, took in answers) < 0.5  # all inside the block
        assert all(took < 0.3 for _, _, took in answers)
        assert time.monotonic() - blocked_at >= 1.0
    finally:
        await runner.cleanup()


async def test_the_probe_port_says_draining_as_soon_as_the_app_drains() -> None:
    """health.drain() on the app's loop: the next probe on the probe port is 503."""
    health = Health()
    port = free_port()
    runner = await started(health, port)
    try:
        assert (await asyncio.to_thread(fetch, port))[0] == 200
        health.drain()
        status, body, _ = await asyncio.to_thread(fetch, port)
        assert status == 503
        assert body == '{"status":"draining"}'
        assert (await asyncio.to_thread(fetch, port, "/livez"))[0] == 200
    finally:
        await runner.cleanup()


async def test_an_on_demand_group_runs_on_the_apps_loop() -> None:
    """`mode: on_demand`: each probe runs the check (on the app's loop) within its budget."""
    calls = 0

    async def counted() -> None:
        nonlocal calls
        calls += 1

    health = Health(checks=[checks.Func("db", counted, mode="on_demand")])
    port = free_port()
    runner = await started(health, port)
    try:
        for expected in (1, 2):
            status, _, _ = await asyncio.to_thread(fetch, port)
            assert status == 200
            assert calls == expected
    finally:
        await runner.cleanup()


async def test_a_result_going_stale_reaches_the_probe_port_without_any_read() -> None:
    """No more runs (the scheduler stopped): when the result goes stale the probe port says
    so, though nothing on the app's loop read the store (a timer at its expiry)."""

    async def fine() -> None:
        return None

    health = Health(checks=[checks.Func("db", fine, interval="100ms", timeout="50ms")])
    port = free_port()
    runner = await started(health, port)
    try:
        await until(port, 200)
        health.scheduler.stop()
        stopped = time.monotonic()
        await until(port, 503)  # stale after 3 intervals
        assert time.monotonic() - stopped < 2.0
    finally:
        await runner.cleanup()


async def test_other_paths_and_bad_budgets_are_one_line_errors() -> None:
    """The probe port answers the probes only; a bad budget is a 400, never a 500."""
    health = Health()
    port = free_port()
    runner = await started(health, port)
    try:
        status, body, _ = await asyncio.to_thread(fetch, port, "/metrics")
        assert status == 404
        assert "this port answers /livez, /readyz, /startupz and /health" in body
        assert (await asyncio.to_thread(fetch, port, "/health"))[:2] == (
            200,
            '{"status":"healthy"}',
        )
        status, body, _ = await asyncio.to_thread(fetch, port, "/readyz?timeout=soon")
        assert status == 400
        status, body, _ = await asyncio.to_thread(fetch, port, "/readyz?fresh=maybe")
        assert status == 400
        assert "?fresh" in body
    finally:
        await runner.cleanup()


async def test_the_probe_thread_stops_with_the_app() -> None:
    """At the app's cleanup the port closes and the thread ends."""
    health = Health()
    port = free_port()
    runner = await started(health, port)
    await runner.cleanup()
    with pytest.raises(ConnectionRefusedError):
        fetch(port)
    assert not any(t.name == "healthd-probes" for t in threading.enumerate())


async def test_a_taken_probe_port_fails_the_start_in_one_line() -> None:
    """Another listener on the probe port: ConfigError naming server.listen and the address."""
    with __import__("socket").create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        app = web.Application()
        healthd.aiohttp.setup(app, Health(), listen=f"127.0.0.1:{port}")
        runner = web.AppRunner(app)
        with pytest.raises(ConfigError, match=rf"server.listen: cannot listen on 127.0.0.1:{port}"):
            await runner.setup()
        await runner.cleanup()


def test_server_listen_in_the_settings_turns_the_probe_port_on() -> None:
    """`server.listen` set (in code or in a file): the probe port; unset: none."""
    assert listen_of(Health(), None) is None
    assert listen_of(Health(server={"listen": "127.0.0.1:9000"}), None) == "127.0.0.1:9000"
    assert listen_of(Health(), "127.0.0.1:9001") == "127.0.0.1:9001"
    app = web.Application()
    healthd.aiohttp.setup(app, Health())
    assert app[EMBEDDED].thread is None
