"""healthd embedded in an aiohttp app (reference §17): the app (tests/embedded_app.py) runs
as a real process, gets real signals, and is asked over real connections."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import time

import aiohttp
import pytest

from tests.embedding import EmbeddedApp

pytestmark = pytest.mark.slow


async def get(url: str, timeout: float = 10.0) -> tuple[int, str, str]:
    """(status, body, Connection header) on a fresh connection."""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
        session.get(url) as response,
    ):
        body = await response.text()
        return response.status, body, response.headers.get("Connection", "")


async def test_readiness_fails_at_once_while_the_app_keeps_serving_with_connection_close() -> None:
    """SIGTERM: /readyz 503 at once, /livez and the app's routes 200 with `Connection: close`,
    on a keep-alive connection opened before the signal too; exit 0 with the exit line."""
    async with EmbeddedApp("--drain-delay", "2s", "--grace", "1s") as app:
        async with aiohttp.ClientSession() as session:  # keep-alive from before the signal
            async with session.get(app.url("/hello")) as response:
                assert response.status == 200
                assert response.headers.get("Connection", "") != "close"
            sent = app.signal()
            await app.line("SIGTERM: draining")
            status, body, _ = await get(app.url("/readyz"))
            assert status == 503
            assert '"draining"' in body
            assert time.monotonic() - sent < 1.5  # at once, well inside drain_delay
            assert (await get(app.url("/livez")))[0] == 200
            async with session.get(app.url("/hello")) as response:
                assert response.status == 200
                assert await response.text() == "hello"
                assert response.headers["Connection"] == "close"
        status, body, connection = await get(app.url("/hello"))
        assert (status, body, connection) == (200, "hello", "close")
        assert time.monotonic() - sent < 2.0  # still inside drain_delay
        assert await app.wait() == 0
        line = app.exit_line()
        assert line.startswith("exit: SIGTERM; draining ")
        assert "(0 cut)" in line
        assert line.endswith("hooks none; code 0")
        draining = float(re.search(r"draining (\d+\.\d+) s", line).group(1))  # type: ignore[union-attr]
        assert 1.95 <= draining < 3.5


async def test_a_slow_request_started_before_the_signal_finishes() -> None:
    """A request in flight at SIGTERM gets its whole answer (within grace)."""
    async with EmbeddedApp("--drain-delay", "500ms", "--grace", "5s") as app:
        slow = asyncio.create_task(get(app.url("/slow?s=2")))
        await app.line("slow started")
        app.signal()
        status, body, connection = await slow
        assert (status, body, connection) == (200, "slept 2.0", "close")
        assert await app.wait() == 0
        assert "(0 cut)" in app.exit_line()


async def test_a_request_longer_than_grace_is_cut_at_grace_and_named() -> None:
    """Cut at exactly grace after the app stopped accepting (not before, not twice as late):
    the client gets a 503, and the exit line names it."""
    async with EmbeddedApp("--drain-delay", "500ms", "--grace", "1s", "--quiet", "200ms") as app:
        started = time.monotonic()
        slow = asyncio.create_task(get(app.url("/slow?s=30")))
        await app.line("slow started")
        await asyncio.sleep(0.3)  # already quiet (200 ms) when drain_delay ends
        sent = app.signal()
        _, stopped = await app.line("stopped accepting")
        status, body, _ = await slow
        answered = time.monotonic()
        assert status == 503
        assert "cut at the end of shutdown.grace" in body
        assert 0.45 <= stopped - sent < 1.5  # drain_delay, then quiet already
        assert 0.95 <= answered - stopped < 1.8  # grace counted from the stop, once
        assert answered - started < 10
        assert await app.wait() == 0
        line = app.exit_line()
        assert "(1 cut: GET /slow)" in line
        await app.line("grace over: cutting GET /slow after")


async def test_hooks_run_last_first_a_raising_one_is_logged_and_a_hung_one_is_cut() -> None:
    """Three hooks: the hung one (last registered) is cut at its timeout and named as timed
    out, the raising one is logged with its name, and the first registered still runs."""
    hooks = [
        "--hook",
        "db.close:ok",
        "--hook",
        "cache.close:raise",
        "--hook",
        "kafka.flush:hang:500ms",
    ]
    async with EmbeddedApp("--drain-delay", "100ms", *hooks) as app:
        sent = app.signal()
        assert await app.wait() == 0
        took = time.monotonic() - sent
        line = app.exit_line()
        hooks_part = re.search(r"hooks (.*); code 0$", line).group(1)  # type: ignore[union-attr]
        parts = hooks_part.split(", ")
        assert [p.split(" ")[0] for p in parts] == ["kafka.flush", "cache.close", "db.close"]
        assert parts[0].endswith("s (timed out)")
        assert 0.49 <= float(parts[0].split(" ")[1]) < 1.2
        assert parts[1].endswith("(failed: RuntimeError: cache.close is broken)")
        await app.line("hook cache.close failed after")
        ran, _ = await app.line("hook db.close ran")
        assert app.lines.index(ran) > app.lines.index(
            (await app.line("hook cache.close failed"))[0]
        )
        assert took < 5


async def test_a_probe_path_the_app_already_has_fails_the_start_in_one_line() -> None:
    """The app's own /readyz before setup: exit 2 with one line naming the path."""
    app = EmbeddedApp("--clash")
    await app.start(wait=False)
    try:
        assert await app.wait(20) == 2
    finally:
        await app.kill()
    assert app.lines == [
        "healthd: healthd.aiohttp.setup: the app already has a route at /readyz "
        "(pass prefix= to mount the probes elsewhere)"
    ]


async def test_under_a_prefix_the_apps_own_probe_path_stays_the_apps() -> None:
    """The app's own /readyz with the probes under /-: /readyz is the app's (the hot path
    answers only under the prefix), /-/readyz is healthd's."""
    async with EmbeddedApp("--clash", "--prefix", "/-") as app:
        assert (await get(app.url("/readyz")))[:2] == (200, "hello")
        status, body, _ = await get(app.url("/-/readyz"))
        assert (status, body) == (200, '{"status":"healthy"}')


async def test_a_port_in_use_fails_the_start_in_one_line() -> None:
    """Another listener on the port: exit 2 with one line naming the address."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        app = EmbeddedApp(port=port)
        await app.start(wait=False)
        try:
            assert await app.wait(20) == 2
        finally:
            await app.kill()
    assert len(app.lines) == 1
    assert app.lines[0].startswith(
        f"healthd: healthd.aiohttp.run_app: cannot listen on 127.0.0.1:{port}: Address already"
    )


async def test_a_second_signal_skips_the_rest_of_the_current_wait() -> None:
    """A second SIGTERM during a 20 s drain_delay stops accepting at once; the exit line
    says the drain was cut short."""
    async with EmbeddedApp("--drain-delay", "20s", "--grace", "5s") as app:
        app.signal()
        await app.line("SIGTERM: draining")
        await asyncio.sleep(0.3)
        second = app.signal(signal.SIGINT)
        _, stopped = await app.line("stopped accepting")
        assert stopped - second < 1.5
        assert await app.wait() == 0
        assert "(cut short: drain_delay)" in app.exit_line()


async def test_the_overall_deadline_wins_over_grace_and_hooks() -> None:
    """shutdown.deadline 1.5 s with a 5 s grace: the slow request is cut at the deadline and
    the hook after it is skipped."""
    args = ["--drain-delay", "500ms", "--grace", "5s", "--quiet", "100ms", "--deadline", "1500ms"]
    async with EmbeddedApp(*args, "--hook", "db.close:ok") as app:
        slow = asyncio.create_task(get(app.url("/slow?s=30")))
        await app.line("slow started")
        await asyncio.sleep(0.2)
        sent = app.signal()
        status, _, _ = await slow
        answered = time.monotonic() - sent
        assert status == 503
        assert 1.45 <= answered < 2.5
        assert await app.wait() == 0
        line = app.exit_line()
        assert "(1 cut: GET /slow)" in line
        assert "hooks db.close 0.00 s (skipped)" in line


async def test_the_app_keeps_accepting_until_the_traffic_is_quiet() -> None:
    """After drain_delay, new connections are still served while requests keep arriving;
    the listener closes once none came for `quiet`, and the exit line says when."""
    args = ["--drain-delay", "300ms", "--grace", "10s", "--quiet", "500ms"]
    async with EmbeddedApp(*args) as app:
        sent = app.signal()
        statuses = []
        while time.monotonic() - sent < 1.5:  # 1.2 s past drain_delay, every 100 ms
            statuses.append((await get(app.url("/hello")))[0])
            last = time.monotonic()  # the app saw it a little earlier
            await asyncio.sleep(0.1)
        _, stopped = await app.line("stopped accepting")
        assert statuses
        assert set(statuses) == {200}
        assert 0.4 <= stopped - last < 1.5
        assert await app.wait() == 0
        quiet = re.search(r"traffic quiet after (\d+\.\d+) s", app.exit_line())
        assert quiet is not None
        assert 1.35 <= float(quiet.group(1)) < 3.0


async def test_a_second_signal_during_grace_cuts_what_is_in_flight_at_once() -> None:
    """grace 20 s, a 30 s request: a second SIGTERM after the stop cuts it then."""
    async with EmbeddedApp("--drain-delay", "200ms", "--grace", "20s", "--quiet", "100ms") as app:
        slow = asyncio.create_task(get(app.url("/slow?s=30")))
        await app.line("slow started")
        await asyncio.sleep(0.2)
        app.signal()
        await app.line("stopped accepting")
        await asyncio.sleep(0.3)
        second = app.signal()
        status, _, _ = await slow
        assert status == 503
        assert time.monotonic() - second < 1.5
        assert await app.wait() == 0
        line = app.exit_line()
        assert "(cut short: grace)" in line
        assert "(1 cut: GET /slow)" in line


async def test_the_exit_line_is_json_when_logging_is() -> None:
    """logging.format json: one JSON object with `event: exit` and the facts as fields."""
    async with EmbeddedApp("--drain-delay", "100ms", "--json", "--hook", "db.close:ok") as app:
        app.signal()
        assert await app.wait() == 0
    exits = [json.loads(line) for line in app.lines if '"event": "exit"' in line]
    assert len(exits) == 1
    fields = exits[0]["exit"]
    assert exits[0]["msg"].startswith("exit: SIGTERM; draining ")
    assert fields["reason"] == "SIGTERM"
    assert fields["requests_cut_count"] == 0
    assert [h["name"] for h in fields["hooks"]] == ["db.close"]
    assert fields["hooks"][0]["outcome"] == "ok"
    assert fields["code"] == 0
