"""DESIGN §18: a 200 readiness answer while degraded carries `x-envoy-degraded: true`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from healthd.model import Outcome
from healthd.testing import FakeCheck
from healthd.web.probes import make_app
from tests.helpers import engine_with, run_now, serve, settings

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]
HEADER = "x-envoy-degraded"


async def client_for(
    aiohttp_client: MakeClient,
    cache: Outcome,
    mode: str = "background",
    loop: bool = False,
    **server: Any,
) -> Client:
    """Readiness with a critical `db` (passing) and a non-critical `cache` (`cache`); with
    `loop`, the implicit loop check has run too (so /health has every result)."""
    checks: list[dict[str, Any]] = [
        {"name": "db", "mode": mode},
        {"name": "cache", "mode": mode, "critical": False},
    ]
    fakes = {"db": FakeCheck([Outcome.PASS]), "cache": FakeCheck([cache])}
    engine = engine_with(fakes, settings(checks, server=server))
    if mode == "background":
        for name in fakes:
            await run_now(engine, name)
    if loop:
        await run_now(engine, "loop")
    return await serve(aiohttp_client, make_app(engine.views()))


@pytest.mark.parametrize("mode", ["background", "on_demand"])  # the cached and the long way
async def test_degraded_readiness_carries_the_header(aiohttp_client: MakeClient, mode: str) -> None:
    """Degraded: 200 with `x-envoy-degraded: true`, on /readyz and on a query's long way."""
    client = await client_for(aiohttp_client, Outcome.FAIL, mode)
    for path in ("/readyz", "/readyz?verbose", "/readyz?fresh=0"):
        resp = await client.get(path)
        assert resp.status == 200, path
        assert resp.headers.get(HEADER) == "true", path


@pytest.mark.parametrize("mode", ["background", "on_demand"])
async def test_healthy_readiness_has_no_header(aiohttp_client: MakeClient, mode: str) -> None:
    """Healthy: 200 without the header."""
    client = await client_for(aiohttp_client, Outcome.PASS, mode)
    for path in ("/readyz", "/readyz?verbose"):
        resp = await client.get(path)
        assert resp.status == 200
        assert HEADER not in resp.headers


async def test_failing_readiness_has_no_header(aiohttp_client: MakeClient) -> None:
    """Unhealthy: 503 without the header."""
    checks: list[dict[str, Any]] = [{"name": "db"}, {"name": "cache", "critical": False}]
    fakes = {"db": FakeCheck([Outcome.FAIL]), "cache": FakeCheck([Outcome.FAIL])}
    engine = engine_with(fakes, settings(checks))
    for name in fakes:
        await run_now(engine, name)
    client = await serve(aiohttp_client, make_app(engine.views()))
    for path in ("/readyz", "/readyz?verbose"):
        resp = await client.get(path)
        assert resp.status == 503
        assert HEADER not in resp.headers


async def test_degraded_answer_configured_as_non_2xx_has_no_header(
    aiohttp_client: MakeClient,
) -> None:
    """Only a 2xx degraded answer carries it: `status_codes: {degraded: 429}` does not."""
    client = await client_for(aiohttp_client, Outcome.FAIL, status_codes={"degraded": 429})
    resp = await client.get("/readyz")
    assert resp.status == 429
    assert HEADER not in resp.headers


async def test_degraded_liveness_and_health_have_no_header(aiohttp_client: MakeClient) -> None:
    """The header is readiness's: /health (degraded too) does not carry it."""
    client = await client_for(aiohttp_client, Outcome.FAIL, loop=True)
    resp = await client.get("/health")
    assert resp.status == 200
    assert (await resp.json())["status"] == "degraded"
    assert HEADER not in resp.headers
