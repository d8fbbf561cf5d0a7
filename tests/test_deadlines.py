"""Deadlines end to end: a hung dependency never holds a probe past the caller's budget.

The hung checks are `on_demand`, so the probe's run is the only one (a background run in
flight would be shared, and its timeout message counts from its own start), and
`deadline.margin` is wide enough that a loaded machine's scheduling delay stays inside it.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import aiohttp
import pytest

from tests.procs import Healthd

pytestmark = pytest.mark.slow


async def test_hung_tcp_answers_within_budget(tmp_path: Path, blackhole: tuple[str, int]) -> None:
    """?timeout=200ms with a hung critical tcp check and a 60 ms margin: 503 in 140-200 ms,
    every time, naming the 140 ms the check had (less what the loop took to start it)."""
    host, port = blackhole
    config = f"""
server: {{listen: "127.0.0.1:{{port}}", show_details: always}}
deadline: {{margin: 60ms}}
checks:
  - {{name: hung, kind: tcp, address: "{host}:{port}", timeout: 5s, mode: on_demand}}
"""
    async with Healthd(tmp_path, config) as healthd, aiohttp.ClientSession() as http:
        await (await http.get(healthd.url("/livez"))).read()  # warm the connection
        for _ in range(5):
            started = time.perf_counter()
            async with http.get(healthd.url("/readyz?timeout=200ms&verbose")) as resp:
                text = await resp.text()
            elapsed = time.perf_counter() - started
            assert resp.status == 503
            assert 0.140 <= elapsed < 0.200, f"answered after {elapsed * 1000:.1f} ms"
            # The check had what was left of 200 - 60 ms when its run started: 140 ms, or a
            # few ms less when the loaded loop took that long to start it.
            (had,) = re.findall(r"^\[-\]hung timeout after (\d+)ms$", text, re.M)
            assert 130 <= int(had) <= 140, text


async def test_header_budget_and_json_detail(tmp_path: Path, blackhole: tuple[str, int]) -> None:
    """X-Request-Timeout-Ms sets the budget too (300 ms, margin 60 ms); the JSON names the
    timed-out check."""
    host, port = blackhole
    config = f"""
server: {{listen: "127.0.0.1:{{port}}", show_details: always}}
deadline: {{margin: 60ms}}
checks:
  - {{name: hung, kind: tcp, address: "{host}:{port}", timeout: 5s, mode: on_demand}}
  - {{name: fine, kind: loop, mode: on_demand}}
"""
    async with Healthd(tmp_path, config) as healthd, aiohttp.ClientSession() as http:
        started = time.perf_counter()
        headers = {"X-Request-Timeout-Ms": "300"}
        async with http.get(healthd.url("/readyz"), headers=headers) as resp:
            body = await resp.json()
        elapsed = time.perf_counter() - started
        assert 0.240 <= elapsed < 0.300, f"answered after {elapsed * 1000:.1f} ms"
        assert body["checks"]["hung"]["status"] == "timeout"
        assert body["checks"]["hung"]["message"] == "timeout after 240ms"
        assert body["checks"]["fine"]["status"] == "pass"
