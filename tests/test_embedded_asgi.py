"""healthd embedded in an ASGI app (DESIGN §17): a FastAPI app (tests/asgi_app.py) under
uvicorn and hypercorn run by `healthd.asgi.serve`, as a real process, real signals and
real connections."""

from __future__ import annotations

import asyncio
import re
import time

import aiohttp
import pytest

from tests.embedding import EmbeddedApp
from tests.test_embedded_aiohttp import get

pytestmark = pytest.mark.slow
SERVERS = pytest.mark.parametrize("server", ["uvicorn", "hypercorn"])


class AsgiApp(EmbeddedApp):
    script = EmbeddedApp.script.with_name("asgi_app.py")


@SERVERS
async def test_readiness_fails_at_once_while_the_app_keeps_serving_with_connection_close(
    server: str,
) -> None:
    """SIGTERM: /readyz 503 at once, the app's routes 200 with `Connection: close` (on a
    keep-alive connection from before the signal too); the app's own lifespan startup and
    shutdown ran; exit 0 with the exit line."""
    async with AsgiApp("--server", server, "--drain-delay", "2s", "--grace", "1s") as app:
        await app.line("app startup")
        async with aiohttp.ClientSession() as session:
            async with session.get(app.url("/hello")) as response:
                assert response.status == 200
                assert response.headers.get("Connection", "") != "close"
            sent = app.signal()
            await app.line("SIGTERM: draining")
            status, body, connection = await get(app.url("/readyz"))
            assert (status, connection) == (503, "close")
            assert '"draining"' in body
            assert time.monotonic() - sent < 1.5
            assert (await get(app.url("/livez")))[0] == 200
            async with session.get(app.url("/hello")) as response:
                assert response.status == 200
                assert await response.text() == "hello"
                assert response.headers["Connection"] == "close"
        assert await get(app.url("/hello")) == (200, "hello", "close")
        assert time.monotonic() - sent < 2.0
        assert await app.wait() == 0
        line = app.exit_line()
        assert line.startswith("exit: SIGTERM; draining ")
        assert line.endswith("(0 cut); hooks none; code 0")
        draining = float(re.search(r"draining (\d+\.\d+) s", line).group(1))  # type: ignore[union-attr]
        assert 1.95 <= draining < 3.5
        shutdown, _ = await app.line("app shutdown")
        assert app.lines.index(shutdown) < app.lines.index(
            next(x for x in app.lines if " exit: " in x)
        )


@SERVERS
async def test_a_slow_request_started_before_the_signal_finishes(server: str) -> None:
    """A request in flight at SIGTERM gets its whole answer (within grace)."""
    async with AsgiApp("--server", server, "--drain-delay", "500ms", "--grace", "5s") as app:
        slow = asyncio.create_task(get(app.url("/slow?s=2")))
        await app.line("slow started")
        app.signal()
        assert await slow == (200, "slept 2.0", "close")
        assert await app.wait() == 0
        assert "(0 cut)" in app.exit_line()


@SERVERS
async def test_a_request_longer_than_grace_is_cut_at_grace_and_named(server: str) -> None:
    """Cut at exactly grace after the stop of accepting (not before, not twice as late):
    the client gets a 503, the exit line names it."""
    args = ["--server", server, "--drain-delay", "500ms", "--grace", "1s", "--quiet", "200ms"]
    async with AsgiApp(*args) as app:
        slow = asyncio.create_task(get(app.url("/slow?s=30")))
        await app.line("slow started")
        await asyncio.sleep(0.3)
        sent = app.signal()
        _, stopped = await app.line("stopped accepting")
        status, body, _ = await slow
        answered = time.monotonic()
        assert status == 503
        assert "cut at the end of shutdown.grace" in body
        assert 0.45 <= stopped - sent < 1.5
        assert 0.95 <= answered - stopped < 1.8
        assert await app.wait() == 0
        assert "(1 cut: GET /slow)" in app.exit_line()


@SERVERS
async def test_hooks_run_last_first_before_the_apps_shutdown(server: str) -> None:
    """Hooks run in reverse order, a hung one cut at its timeout; then the app's own
    lifespan shutdown."""
    hooks = ["--hook", "db.close:ok", "--hook", "kafka.flush:hang:500ms"]
    async with AsgiApp("--server", server, "--drain-delay", "100ms", *hooks) as app:
        app.signal()
        assert await app.wait() == 0
        line = app.exit_line()
        assert re.search(
            r"hooks kafka\.flush 0\.\d\d s \(timed out\), db\.close 0\.\d\d s; code 0$", line
        ), line
        ran, _ = await app.line("hook db.close ran")
        shutdown, _ = await app.line("app shutdown")
        assert app.lines.index(ran) < app.lines.index(shutdown)


@SERVERS
async def test_a_plain_asgi_app_without_lifespan_works(server: str) -> None:
    """A bare ASGI callable that refuses the lifespan scope: probes answer, the app
    answers, SIGTERM drains and exits 0."""
    async with AsgiApp("--server", server, "--plain", "--drain-delay", "300ms") as app:
        assert await get(app.url("/anything")) == (200, "plain", "")
        assert (await get(app.url("/readyz")))[0] == 200
        assert (await get(app.url("/metrics")))[0] == 200
        app.signal()
        assert (await get(app.url("/readyz")))[0] == 503
        assert await get(app.url("/anything")) == (200, "plain", "close")
        assert await app.wait() == 0
        assert "code 0" in app.exit_line()


async def test_a_probe_path_the_fastapi_app_already_has_fails_the_start_in_one_line() -> None:
    """The FastAPI app's own /readyz: exit 2, one line naming the path."""
    app = AsgiApp("--clash")
    await app.start(wait=False)
    try:
        assert await app.wait(20) == 2
    finally:
        await app.kill()
    assert app.lines == [
        "healthd: healthd.asgi.Probes: the app already has a route at /readyz "
        "(pass prefix= to mount the probes elsewhere)"
    ]


async def test_with_a_prefix_the_apps_own_probe_path_is_its_own() -> None:
    """prefix="/-": the probes at /-/readyz, the app's own /readyz answers itself."""
    async with AsgiApp("--clash", "--prefix", "/-") as app:
        assert (await get(app.url("/readyz")))[1] == '"mine"'
        status, body, _ = await get(app.url("/-/readyz?verbose"))
        assert (status, body.splitlines()[-1]) == (200, "readyz check passed")
        app.signal()
        assert await app.wait() == 0
