"""End to end across processes: budgets propagate along a chain of healthd instances."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.procs import Healthd

pytestmark = pytest.mark.slow


def remote(name: str, port: int) -> str:
    return f"""
server: {{listen: "127.0.0.1:{{port}}", show_details: always}}
checks:
  - name: {name}
    kind: remote
    url: "http://127.0.0.1:{port}/readyz"
    mode: on_demand
    timeout: 5s
    interval: 30s
"""


async def test_three_hop_chain_answers_within_root_budget(
    tmp_path: Path, blackhole: tuple[str, int]
) -> None:
    """root → middle → leaf (hung tcp): a 400 ms budget is met and the leaf's check is named."""
    host, port = blackhole
    leaf_cfg = f"""
server: {{listen: "127.0.0.1:{{port}}", show_details: always}}
checks:
  - {{name: db, kind: tcp, address: "{host}:{port}", mode: on_demand, timeout: 5s}}
"""
    async with (
        Healthd(tmp_path, leaf_cfg, "leaf") as leaf,
        Healthd(tmp_path, remote("leaf", leaf.port), "middle") as middle,
        Healthd(tmp_path, remote("payments", middle.port), "root") as root,
        aiohttp.ClientSession() as http,
    ):
        for _ in range(3):
            started = time.perf_counter()
            async with http.get(root.url("/health?timeout=400ms")) as resp:
                body = await resp.json()
            elapsed = time.perf_counter() - started
            assert resp.status == 503
            assert elapsed < 0.400, f"root answered after {elapsed * 1000:.0f} ms"
            assert elapsed > 0.300, "the chain gave up long before the budget"
        payments = body["checks"]["payments"]
        assert payments["status"] == "fail"
        assert "db" in payments["message"]
        assert "timeout" in payments["message"]
        leaf_view = payments["checks"]["leaf"]["checks"]["db"]
        assert leaf_view["status"] == "timeout"


async def test_coalescing_reaches_target_once(tmp_path: Path) -> None:
    """1,000 concurrent /readyz?fresh=1 on one on_demand http check reach the target once."""
    hits = 0
    release = asyncio.Event()

    async def target(_: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        await release.wait()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", target)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    target_port = runner.addresses[0][1]
    config = f"""
server: {{listen: "127.0.0.1:{{port}}"}}
checks:
  - name: api
    kind: http
    url: "http://127.0.0.1:{target_port}/"
    mode: on_demand
    timeout: 5s
    interval: 30s
"""
    try:
        async with Healthd(tmp_path, config) as healthd:
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as http:

                async def probe() -> int:
                    url = healthd.url("/readyz?fresh=1&timeout=5s")
                    async with http.get(url) as resp:
                        await resp.read()
                        return resp.status

                probes = [asyncio.create_task(probe()) for _ in range(1000)]
                while hits == 0:  # the first probe has reached the target: let it answer
                    await asyncio.sleep(0.01)
                await asyncio.sleep(2.0)  # let the other probes arrive while it is in flight
                release.set()
                codes = await asyncio.wait_for(asyncio.gather(*probes), 30)
        assert hits == 1
        assert codes.count(200) >= 990, json.dumps({c: codes.count(c) for c in set(codes)})
    finally:
        await runner.cleanup()
