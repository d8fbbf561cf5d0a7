"""healthd.asgi (reference §17): the wrapper's own parts. The stop order under uvicorn is
tested beside the aiohttp half's (tests/test_embedded_aiohttp.py, `uvicorn` ids)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from healthd import Health, checks
from healthd.asgi import Probes
from healthd.errors import ConfigError
from tests.embedding import ASGI_APP, EmbeddedApp


async def call(
    app: Any, path: str, method: str = "GET", query: bytes = b""
) -> tuple[int, dict[bytes, bytes], bytes]:
    """One HTTP request through the ASGI callable: (status, headers, body)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "query_string": query, "headers": []}
    await app(scope, receive, send)
    start, *bodies = sent
    return start["status"], dict(start["headers"]), b"".join(b.get("body", b"") for b in bodies)


async def app_hello(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


async def test_probe_paths_are_answered_before_the_app_with_the_daemons_answers() -> None:
    """/readyz, /readyz/{check}, ?verbose and bad input answered by healthd's own views
    (404, 400, 405: never the app's); other paths go to the app; draining adds close."""

    async def down() -> None:
        raise ConnectionRefusedError("cache down")

    health = Health(checks=[checks.Func("db", lambda: None), checks.Func("cache", down)])
    probes = Probes(app_hello, health)
    await health.evaluate("readiness", fresh=True)
    assert (await call(probes, "/readyz"))[0] == 503
    assert (await call(probes, "/readyz/db"))[0] == 200
    assert (await call(probes, "/readyz/nope"))[0] == 404
    status, _, body = await call(probes, "/readyz", query=b"timeout=soon")
    assert status == 400
    assert b"timeout" in body
    assert (await call(probes, "/readyz", method="POST"))[0] == 405
    assert (await call(probes, "/hello"))[2] == b"hello"
    assert b"connection" not in (await call(probes, "/hello"))[1]
    probes.closing()
    assert (await call(probes, "/hello"))[1][b"connection"] == b"close"
    await health.stop()


async def test_a_prefix_mounts_the_probes_elsewhere_and_a_bad_one_is_one_line() -> None:
    health = Health(checks=[checks.Func("db", lambda: None)])
    probes = Probes(app_hello, health, prefix="/-")
    await health.evaluate("readiness", fresh=True)
    assert (await call(probes, "/-/readyz"))[0] == 200
    assert (await call(probes, "/-/readyz/db"))[0] == 200
    assert (await call(probes, "/readyz"))[2] == b"hello"  # the app's own path now
    with pytest.raises(ConfigError, match="prefix 'x' must start with /"):
        Probes(app_hello, health, prefix="x")
    await health.stop()


@pytest.mark.slow
async def test_the_apps_lifespan_runs_inside_healths() -> None:
    """Starlette's own lifespan: its startup before the app serves; on SIGTERM the hook runs
    in the drain, the app's shutdown after it, then the exit line."""
    async with EmbeddedApp(
        "--drain-delay", "100ms", "--hook", "db.close:ok", script=ASGI_APP
    ) as app:
        _, up = await app.line("app startup")
        _, serving = await app.line("serving on")
        assert up <= serving
        app.signal()
        assert await app.wait() == 0
        _, hook = await app.line("hook db.close ran")
        _, down = await app.line("app shutdown")
        _, done = await app.line(" exit: ")
        assert hook <= down <= done
        assert sum("hook db.close ran" in line for line in app.lines) == 1


@pytest.mark.slow
async def test_an_asgi_app_without_lifespan_support_is_served_and_drained() -> None:
    """A bare ASGI callable that raises on `lifespan`: healthd starts and stops anyway."""
    async with EmbeddedApp("--drain-delay", "100ms", "--plain", script=ASGI_APP) as app:
        async with asyncio.timeout(10):
            from tests.test_embedded_aiohttp import get

            assert (await get(app.url("/hello")))[:2] == (200, "hello")
            assert (await get(app.url("/readyz")))[0] == 200
        app.signal()
        assert await app.wait() == 0
        assert app.exit_line().endswith("code 0")
