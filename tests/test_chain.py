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
TOKEN = "ch41n-t0ken"


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
    """1,000 concurrent /readyz?fresh=1 on one on_demand http check reach the target once,
    and every one of them gets the 200 of that one run."""
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
server: {{listen: "127.0.0.1:{{port}}", admin_listen: "127.0.0.1:{{admin_port}}", token: {TOKEN}}}
checks:
  - name: api
    kind: http
    url: "http://127.0.0.1:{target_port}/"
    mode: on_demand
    timeout: 19s
    interval: 60s
"""  # timeout under the probes' budget: every run has its own whole timeout, so all join
    # one however far apart they arrive (a run cut short by a budget may get a second one)
    try:
        async with Healthd(tmp_path, config) as healthd:
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as http:

                async def probe() -> int:
                    async with http.get(healthd.url("/readyz?fresh=1&timeout=20s")) as resp:
                        await resp.read()
                        return resp.status

                probes = [asyncio.create_task(probe()) for _ in range(1000)]
                # Release the one run only once all 1,000 requests wait on it: none comes late.
                waiting = await requests_waiting(http, healthd, 1000)
                assert (hits, waiting) == (1, 1000)
                release.set()
                codes = await asyncio.wait_for(asyncio.gather(*probes), 30)
        assert hits == 1
        assert codes == [200] * 1000, json.dumps({c: codes.count(c) for c in set(codes)})
    finally:
        await runner.cleanup()


async def requests_waiting(http: aiohttp.ClientSession, healthd: Healthd, want: int) -> int:
    """The number of /readyz requests in flight (admin state), once it reaches `want` (≤ 15 s)."""
    end = time.monotonic() + 15.0
    while True:
        url = healthd.admin_url("/admin/state")
        async with http.get(url, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
            state = await resp.json()
        found = [r for r in state["requests_in_flight"] if r["request"].startswith("GET /readyz")]
        if len(found) >= want or time.monotonic() > end:
            return len(found)
        await asyncio.sleep(0.05)
