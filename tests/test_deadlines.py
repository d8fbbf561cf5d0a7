"""Deadlines end to end: a hung dependency never holds a probe past the caller's budget."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import pytest

from tests.procs import Healthd

pytestmark = pytest.mark.slow


async def test_hung_tcp_answers_within_budget(tmp_path: Path, blackhole: tuple[str, int]) -> None:
    """?fresh=1&timeout=200ms with a hung critical tcp check: 503 in 170-200 ms, every time."""
    host, port = blackhole
    config = f"""
server: {{listen: "127.0.0.1:{{port}}", show_details: always}}
checks:
  - {{name: hung, kind: tcp, address: "{host}:{port}", timeout: 5s, interval: 30s}}
"""
    async with Healthd(tmp_path, config) as healthd, aiohttp.ClientSession() as http:
        await (await http.get(healthd.url("/livez"))).read()  # warm the connection
        for _ in range(5):
            started = time.perf_counter()
            async with http.get(healthd.url("/readyz?fresh=1&timeout=200ms&verbose")) as resp:
                text = await resp.text()
            elapsed = time.perf_counter() - started
            assert resp.status == 503
            assert 0.170 <= elapsed < 0.200, f"answered after {elapsed * 1000:.1f} ms"
            assert "[-]hung timeout after 180ms" in text.splitlines()


async def test_header_budget_and_json_detail(tmp_path: Path, blackhole: tuple[str, int]) -> None:
    """X-Request-Timeout-Ms sets the budget too; the JSON names the timed-out check."""
    host, port = blackhole
    config = f"""
server: {{listen: "127.0.0.1:{{port}}", show_details: always}}
checks:
  - {{name: hung, kind: tcp, address: "{host}:{port}", timeout: 5s, interval: 30s}}
  - {{name: fine, kind: loop, mode: on_demand}}
"""
    async with Healthd(tmp_path, config) as healthd, aiohttp.ClientSession() as http:
        started = time.perf_counter()
        headers = {"X-Request-Timeout-Ms": "300"}
        async with http.get(healthd.url("/readyz?fresh=1"), headers=headers) as resp:
            body = await resp.json()
        elapsed = time.perf_counter() - started
        assert 0.270 <= elapsed < 0.300
        assert body["checks"]["hung"]["status"] == "timeout"
        assert body["checks"]["hung"]["message"] == "timeout after 280ms"
        assert body["checks"]["fine"]["status"] == "pass"
