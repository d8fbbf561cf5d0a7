"""healthd.client.Gate (reference §18): what a closed gate costs a call, and how soon a gate
opens after a transition in healthd. Writes bench/results/gate.md.

1. Overhead: the same coroutine awaited bare and inside `async with gate:` (closed), in
   rounds of interleaved batches; the median round. Two coroutines: one that returns at
   once (the gate's cost in isolation) and a keep-alive GET to a loopback aiohttp server
   (a call as an app makes it).
2. Transition → gate open: a real `healthd run` whose critical heartbeat check is failed
   and passed again through the admin API, 100 times each way. From the POST leaving the
   client (an upper bound on the transition's time: the check runs and the transition is
   recorded after that) to the gate's state changing (open on a failure, half_open on a
   recovery), taken in the Watch's own callback.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import write_table

from healthd.client import Gate
from tests.procs import Healthd

TOKEN = "bench-gate-token"
CONFIG = f"""
server: {{listen: "127.0.0.1:{{port}}", admin_listen: "127.0.0.1:{{admin_port}}",
         token: {TOKEN}}}
shutdown: {{drain_delay: 0s, grace: 1s}}
defaults: {{flapping: off}}  # 200 transitions would be held as flapping
checks:
  - {{name: db, kind: heartbeat, ttl: 600s, interval: 60s, timeout: 1s}}
"""
Call = Callable[[], Awaitable[object]]


async def noop() -> int:
    return 1


async def per_call(call: Call, n: int, gate: Gate | None) -> float:
    """Seconds per call over `n` calls, bare or inside the gate."""
    started = time.perf_counter()
    if gate is None:
        for _ in range(n):
            await call()
    else:
        for _ in range(n):
            async with gate:
                await call()
    return (time.perf_counter() - started) / n


async def overhead(gate: Gate, call: Call, n: int, rounds: int) -> tuple[float, float]:
    """Median seconds per call (bare, gated) over `rounds` interleaved rounds."""
    bare, gated = [], []
    await per_call(call, max(1, n // 10), None)  # warm up
    for _ in range(rounds):
        bare.append(await per_call(call, n, None))
        gated.append(await per_call(call, n, gate))
    return statistics.median(bare), statistics.median(gated)


async def post(session: aiohttp.ClientSession, h: Healthd, status: str) -> None:
    url = h.admin_url("/heartbeat/db")
    async with session.post(url, json={"status": status}) as resp:
        assert resp.status == 200, await resp.text()


async def transitions(h: Healthd, n: int) -> dict[str, list[float]]:
    """POST sent → the gate's state changed, for `n` failures and `n` recoveries."""
    gate = Gate(h.url(""), backoff=(0.02, 0.2))
    await gate.start()
    changed = asyncio.Event()
    told = gate.watch.on_change
    assert told is not None

    def hook() -> None:
        told()
        changed.set()

    gate.watch.on_change = hook
    took: dict[str, list[float]] = {"open": [], "half_open": []}
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as s:
            for _ in range(n):
                for status, want in (("fail", "open"), ("pass", "half_open")):
                    changed.clear()
                    sent = time.perf_counter()
                    posted = asyncio.ensure_future(post(s, h, status))
                    async with asyncio.timeout(10):  # bounded: a lost change is an error
                        while gate.state != want:
                            await changed.wait()
                            changed.clear()
                    took[want].append(time.perf_counter() - sent)
                    await posted
                if gate.state == "half_open":
                    async with gate:  # the trial call closes it again
                        pass
    finally:
        await gate.close()
    return took


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def ns(seconds: float) -> str:
    return f"{seconds * 1e9:,.0f} ns"


def p99(values: list[float]) -> float:
    return sorted(values)[max(0, round(len(values) * 0.99) - 1)]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200_000, help="no-op calls per batch")
    parser.add_argument("--gets", type=int, default=2_000, help="HTTP GETs per batch")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--transitions", type=int, default=100)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    app = web.Application()

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        async with Healthd(Path(tmp), CONFIG) as h, aiohttp.ClientSession() as session:
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as s:
                await post(s, h, "pass")
            gate = Gate(h.url(""))
            await gate.start()
            try:
                assert gate.state == "closed"

                async def get() -> bytes:
                    async with session.get(url) as resp:
                        return await resp.read()

                for name, call, n in (("no-op coroutine", noop, args.calls),
                                      ("loopback HTTP GET (aiohttp)", get, args.gets)):  # fmt: skip
                    bare, gated = await overhead(gate, call, n, args.rounds)
                    rows.append([
                        f"closed gate, {name}", ns(bare), ns(gated), ns(gated - bare),
                        f"{gated / bare:.2f}",
                    ])  # fmt: skip
            finally:
                await gate.close()
            took = await transitions(h, args.transitions)
    await runner.cleanup()
    for want, label in (("open", "failure → open"), ("half_open", "recovery → half_open")):
        values = took[want]
        rows.append([
            f"transition {label} (POST sent → gate), {len(values)}x",
            ms(min(values)), ms(statistics.median(values)), ms(p99(values)), ms(max(values)),
        ])  # fmt: skip
    notes = (
        "Overhead rows: bare / gated / difference per call / ratio gated:bare (median of "
        f"{args.rounds} interleaved rounds of {args.calls:,} no-op calls or {args.gets:,} "
        "GETs). Transition rows: min / p50 / p99 / max, from the admin POST leaving the "
        "client (healthd then runs the heartbeat check and records the transition) to the "
        "gate's state changing in the client's Watch callback; an upper bound on "
        "transition → gate. Same machine, loopback, default event loop."
    )
    write_table(
        "gate", "healthd.client.Gate: cost when closed, time to open (reference §18)",
        ["measure", "bare / min", "gated / p50", "overhead / p99", "ratio / max"], rows, notes,
        write=not args.no_write,
    )  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
