"""`healthd.aiohttp.setup` in one process (real aiohttp servers on port 0), and the exit
line's form (embed/drain.py)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

import healthd.aiohttp
from healthd import Health, checks
from healthd.embed.aiohttp import EMBEDDED, AiohttpServer, serve
from healthd.embed.drain import Summary
from healthd.embed.traffic import Request
from healthd.errors import ConfigError
from healthd.hooks import HookReport

Client = TestClient[web.Request, web.Application]
AiohttpClient = Callable[[web.Application], Awaitable[Client]]


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hello")


def app_with(health: Health, **options: object) -> web.Application:
    app = web.Application()
    app.add_routes([web.get("/hello", hello)])
    healthd.aiohttp.setup(app, health, **options)  # type: ignore[arg-type]
    return app


async def test_setup_mounts_the_probes_and_metrics_under_a_prefix(
    aiohttp_client: AiohttpClient,
) -> None:
    """prefix="/-": /-/readyz, /-/livez/{check}, /-/health, /-/metrics; the app's routes stay."""

    async def cache() -> None:
        raise ConnectionRefusedError("cache down")

    health = Health(checks=[checks.Func("db", lambda: None), checks.Func("cache", cache)])
    client = await aiohttp_client(app_with(health, prefix="/-"))
    ready = await health.evaluate("readiness", fresh=True)
    assert ready.state.value == "unhealthy"
    response = await client.get("/-/readyz?verbose")
    assert response.status == 503
    assert (await response.text()).endswith("readyz check failed\n")  # names need a token
    assert (await client.get("/-/readyz/db")).status == 200
    assert (await client.get("/-/health")).status == 503
    metrics = await client.get("/-/metrics")
    assert metrics.status == 200
    assert "healthd_check_status" in await metrics.text()
    assert (await client.get("/readyz")).status == 404
    assert await (await client.get("/hello")).text() == "hello"


async def test_metrics_false_leaves_metrics_to_the_app(aiohttp_client: AiohttpClient) -> None:
    """metrics=False: no /metrics route (the app may have its own)."""
    client = await aiohttp_client(app_with(Health(), metrics=False))
    assert (await client.get("/metrics")).status == 404
    assert (await client.get("/livez")).status == 200


async def test_only_the_apps_own_requests_count_as_traffic(aiohttp_client: AiohttpClient) -> None:
    """Probes (a load balancer's checks) are not traffic; the app's requests are."""
    app = app_with(Health())
    client = await aiohttp_client(app)
    traffic = app[EMBEDDED].traffic
    for path in ("/readyz", "/readyz?verbose", "/livez", "/health", "/metrics"):
        assert (await client.get(path)).status == 200
    assert traffic.finished == 0
    assert traffic.last == float("-inf")
    assert (await client.get("/hello")).status == 200
    assert traffic.finished == 1
    assert traffic.last > 0


async def test_a_route_added_after_setup_at_a_probe_path_fails_the_start() -> None:
    """POST /readyz registered after setup: the app's start fails, naming the path."""
    app = app_with(Health())
    app.add_routes([web.post("/readyz", hello)])
    runner = web.AppRunner(app)
    with pytest.raises(ConfigError, match=r"already has a route at /readyz \(pass prefix="):
        await runner.setup()
    await runner.cleanup()


async def test_under_a_plain_runner_the_hooks_run_and_health_stops_at_cleanup() -> None:
    """Without our run_app (aiohttp's own runner): health starts with the app, and at the
    app's cleanup the hooks run, last first, then health stops."""
    ran: list[str] = []
    calls = 0

    async def counted() -> None:
        nonlocal calls
        calls += 1

    health = Health(checks=[checks.Func("db", counted, interval="50ms", timeout="40ms")])
    health.on_stop(lambda: ran.append("first"), name="first")
    health.on_stop(lambda: ran.append("second"), name="second")
    app = app_with(health)
    runner = web.AppRunner(app)
    await runner.setup()
    await asyncio.sleep(0.3)
    assert calls >= 2  # the checks run in the background with the app
    await runner.cleanup()
    assert ran == ["second", "first"]
    stopped_at = calls
    await asyncio.sleep(0.2)
    assert calls == stopped_at  # and stop with it


def test_a_route_at_a_probe_path_before_setup_is_named() -> None:
    """The app's own /metrics: the error names /metrics (raised when the app starts)."""
    app = web.Application()
    app.add_routes([web.get("/metrics", hello)])
    healthd.aiohttp.setup(app, Health())
    assert app[EMBEDDED].taken == "/metrics"


def test_a_bad_prefix_or_a_second_setup_is_one_line() -> None:
    """prefix without its slash, or setup twice on one app: a ConfigError saying so."""
    with pytest.raises(ConfigError, match=r"prefix 'probes' must start with /"):
        healthd.aiohttp.setup(web.Application(), Health(), prefix="probes")
    app = app_with(Health())
    with pytest.raises(ConfigError, match="called twice on the same app"):
        healthd.aiohttp.setup(app, Health())


def test_run_app_without_setup_is_one_line() -> None:
    """run_app on an app setup() never saw: a ConfigError saying what to do."""
    with pytest.raises(ConfigError, match=r"call healthd.aiohttp.setup\(app, health\) first"):
        AiohttpServer(web.Application(), 75.0)


def test_the_exit_line_names_at_most_ten_cut_requests() -> None:
    """The §17 form; 12 cut requests: ten named, then how many more."""
    summary = Summary(
        "SIGTERM", draining=5.0, quiet_after=0.5, drained=312, drain_took=0.41,
        hooks=[HookReport("db.close", 0.02), HookReport("kafka.flush", 5.0, "timed out")],
    )  # fmt: skip
    assert summary.line() == (
        "exit: SIGTERM; draining 5.00 s; traffic quiet after 0.50 s; requests drained 312 in "
        "0.41 s (0 cut); hooks db.close 0.02 s, kafka.flush 5.00 s (timed out); code 0"
    )
    summary.cut = [Request("GET", f"/r{i}", 0.0) for i in range(12)]
    summary.quiet_after = None
    summary.skipped = ["drain_delay"]
    line = summary.line()
    assert "draining 5.00 s (cut short: drain_delay); traffic still arriving at the stop" in line
    assert "(12 cut: GET /r0, GET /r1," in line
    assert "GET /r9, +2 more)" in line
    assert "GET /r10" not in line
    assert summary.fields()["requests_cut_count"] == 12


async def test_serve_on_port_0_says_the_port_it_got(caplog: pytest.LogCaptureFixture) -> None:
    """serve(port=0): the "serving on" line names the port the kernel chose, which answers."""
    import aiohttp

    health = Health(shutdown={"drain_delay": "0s", "quiet": "0s"})
    app = app_with(health)
    with caplog.at_level(logging.INFO, "healthd"):
        serving = asyncio.create_task(serve(app, health, "127.0.0.1", 0))
        while "serving on" not in caplog.text:
            await asyncio.sleep(0.01)
        port = int(caplog.text.split("serving on 127.0.0.1:")[1].split(" ")[0])
        assert port > 0
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/hello") as response,
        ):
            assert await response.text() == "hello"
        os.kill(os.getpid(), signal.SIGTERM)  # its own handler: the drain, not the default
        summary = await asyncio.wait_for(serving, 10)
    assert summary.reason == "SIGTERM"
    assert summary.drained == 0
