"""healthd embedded in an aiohttp app (issue 19, items 4 and 8): what the probes cost the
app, whether they queue behind it, and what in-process checks do to its event loop.

    overhead   wrk against the app's cached /readyz and its trivial `/ok` route: the same
               process, the same connections, rounds interleaved; the ratio of medians
    probes     the app saturated by wrk at 1,000 connections on `/work`; a client opens a
               new connection every 20 ms for `GET /readyz`: (a) on the app's own port and
               loop, (b) on the probe thread's own port (`setup(..., listen=)`)
    lag        the `loop` check's own figure (its message in /health, read with the token)
               under a paced load, without and with 100 in-process `checks.Func` checks

The app (bench/embedded_app.py) runs in a process of its own on core 0; wrk and this
client on core 1. aiohttp only: the FastAPI rows come with healthd.asgi.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from _common import (
    RESULTS,
    free_port,
    http_get,
    pinned,
    python,
    raise_nofile,
    read_answer,
    start,
    stop,
    wait_ok,
    write_table,
)

from healthd.durations import parse_duration

HERE = Path(__file__).parent
ROUNDS, SECONDS, CONNECTIONS = 5, 5, 100  # overhead
SATURATE, PROBE_EVERY, PROBE_SECONDS = 1000, 0.02, 10.0  # probes: wrk runs PROBE_SECONDS + 4
LOAD_CONNECTIONS, LOAD_EVERY, LAG_SECONDS = 10, 0.01, 12.0  # lag: ~1,000 req/s paced
CHECKS = 100


@contextmanager
def app(*args: str) -> Iterator[int]:
    """The app in a process of its own on core 0: its port, once /readyz answers 200."""
    port = free_port()
    proc = start([python(), str(HERE / "embedded_app.py"), str(port), *args], port, cpu=0)
    try:
        wait_ok(f"http://127.0.0.1:{port}/readyz")
        yield port
    finally:
        stop(proc)


def run_wrk(url: str, connections: int, seconds: float, clean: bool = True) -> float:
    """wrk on core 1: requests per second (a clean run: no errors, every answer 2xx)."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", url]
    out = subprocess.run(pinned(1, argv), capture_output=True, text=True, check=True).stdout
    rate = next((ln.split()[1] for ln in out.splitlines() if ln.startswith("Requests/sec")), "")
    if not rate or (clean and ("Non-2xx" in out or "Socket errors" in out)):
        raise RuntimeError(f"wrk run not clean:\n{out}")
    return float(rate)


def overhead() -> tuple[list[list[str]], str]:
    ok_rates, readyz_rates = [], []
    with app() as port:
        ok, readyz = f"http://127.0.0.1:{port}/ok", f"http://127.0.0.1:{port}/readyz"
        run_wrk(ok, CONNECTIONS, 2)  # warm-up both
        run_wrk(readyz, CONNECTIONS, 2)
        for _ in range(ROUNDS):
            ok_rates.append(run_wrk(ok, CONNECTIONS, SECONDS))
            readyz_rates.append(run_wrk(readyz, CONNECTIONS, SECONDS))
    o, r = statistics.median(ok_rates), statistics.median(readyz_rates)
    rounds = ", ".join(f"{x / y:.2f}" for x, y in zip(readyz_rates, ok_rates, strict=True))
    rows = [["aiohttp", f"{o:,.0f}", f"{r:,.0f}", f"{r / o:.2f}", rounds]]
    return rows, f"{r / o:.2f}"


async def probe_for(port: int, seconds: float) -> list[float | None]:
    """A GET /readyz on a new connection every PROBE_EVERY: each one's seconds (None: failed)."""
    tasks = []
    loop = asyncio.get_running_loop()
    begin = loop.time()
    tick = 0
    while loop.time() - begin < seconds:
        tasks.append(asyncio.create_task(http_get(port, "/readyz", within=10.0)))
        tick += 1
        await asyncio.sleep(max(0.0, begin + tick * PROBE_EVERY - loop.time()))
    answers = await asyncio.gather(*tasks)
    return [done - sent if status == 200 else None for sent, done, status in answers]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def saturated(listen: bool) -> list[str]:
    probe_port = free_port()
    with app(*(["--listen", str(probe_port)] if listen else [])) as port:
        url = f"http://127.0.0.1:{port}/work"
        with subprocess.Popen(
            pinned(1, ["wrk", "-t1", f"-c{SATURATE}", f"-d{PROBE_SECONDS + 4:g}s",
                       "--timeout", "10s", url]),
            stdout=subprocess.PIPE, text=True,
        ) as load:  # fmt: skip
            time.sleep(2.0)  # every connection open and busy
            took = asyncio.run(probe_for(probe_port if listen else port, PROBE_SECONDS))
            out, _ = load.communicate(timeout=60)
    rate = next((ln.split()[1] for ln in out.splitlines() if ln.startswith("Requests/sec")), "?")
    good = [t * 1000 for t in took if t is not None]
    failed = len(took) - len(good)
    where = "probe thread's port (listen=)" if listen else "app's own port and loop"
    if not good:
        return [where, f"{float(rate):,.0f}", str(len(took)), str(failed), "-", "-", "-"]
    p50, p99 = percentile(good, 0.5), percentile(good, 0.99)
    return [where, f"{float(rate):,.0f}", str(len(took)), str(failed),
            f"{p50:.1f}", f"{p99:.1f}", f"{max(good):.1f}"]  # fmt: skip


async def paced_load(port: int, stop_at: float) -> int:
    """LOAD_CONNECTIONS keep-alive connections, each a GET /ok every LOAD_EVERY: answers."""

    async def one() -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        loop, count = asyncio.get_running_loop(), 0
        begin = loop.time()
        while loop.time() < stop_at:
            writer.write(b"GET /ok HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            status, _ = await read_answer(reader)
            count += status == 200
            await asyncio.sleep(max(0.0, begin + (count + 1) * LOAD_EVERY - loop.time()))
        writer.close()
        return count

    return sum(await asyncio.gather(*(one() for _ in range(LOAD_CONNECTIONS))))


def loop_check(port: int) -> tuple[str, float]:
    """The `loop` check's latest (observed_at, lag in s), from /health with the token."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/health",
        headers={"Authorization": "Bearer bench", "Accept": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        loop = json.load(resp)["checks"]["loop"]
    return loop["observed_at"], parse_duration(loop["message"].removeprefix("event loop lag "))


async def lag_under_load(port: int) -> tuple[list[float], int]:
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + LAG_SECONDS + 2
    load = asyncio.create_task(paced_load(port, stop_at))
    await asyncio.sleep(2.0)  # past the first runs, the load steady
    seen: dict[str, float] = {}
    while loop.time() < stop_at:
        at, lag = await asyncio.to_thread(loop_check, port)
        seen[at] = lag
        await asyncio.sleep(0.25)
    return list(seen.values()), await load


def lag(count: int) -> list[float]:
    with app(*(["--checks", str(count)] if count else [])) as port:
        lags, answered = asyncio.run(lag_under_load(port))
    print(f"lag, {count} checks: {answered / (LAG_SECONDS + 2):,.0f} req/s paced", file=sys.stderr)
    return [x * 1000 for x in lags]


def main() -> int:
    if shutil.which("wrk") is None:
        print("bench: wrk is needed (apt-get install wrk)", file=sys.stderr)
        return 2
    raise_nofile(8192)  # wrk and the app (a child) hold 1,000 connections each
    over_rows, ratio = overhead()
    probe_rows = [saturated(listen=False), saturated(listen=True)]
    bare, loaded = lag(0), lag(CHECKS)
    added = statistics.median(loaded) - statistics.median(bare)
    lag_rows = [
        [label, str(len(xs)), f"{statistics.median(xs):.2f}", f"{percentile(xs, 0.9):.2f}",
         f"{max(xs):.2f}"]
        for label, xs in (("none", bare), (f"{CHECKS} checks.Func", loaded))
    ]  # fmt: skip
    fastapi = "FastAPI rows come with healthd.asgi (not built yet); this table is aiohttp only."
    texts = [
        write_table(
            "embedded",
            "Embedded aiohttp: cached /readyz vs a trivial route of the same app",
            ["app", "`/ok` req/s", "`/readyz` req/s", "ratio", "per round"],
            over_rows,
            f'wrk -t1 -c{CONNECTIONS} -d{SECONDS}s against `/ok` (`web.Response(text="ok")`) '
            f"and the cached `/readyz` of one app process (core 0; wrk on core 1), {ROUNDS} "
            "alternating rounds, median. Goal: ratio >= 0.9. " + fastapi,
            write=False,
        ),
        write_table(
            "embedded",
            f"Embedded aiohttp: probes while the app is saturated at {SATURATE:,} connections",
            ["probes on", "app req/s (wrk)", "probes", "failed", "p50 ms", "p99 ms", "max ms"],
            probe_rows,
            f"wrk -t1 -c{SATURATE} on `/work` (a yield and a small CPU loop), the app on core "
            f"0; after 2 s, for {PROBE_SECONDS:g} s, a `GET /readyz` on a new connection every "
            f"{PROBE_EVERY * 1000:g} ms (connect to answer; failed: no 200 within 10 s). "
            "Goal: p99 <= 10 ms on the probe thread's port.",
            write=False,
        ),
        write_table(
            "embedded",
            "Embedded aiohttp: the `loop` check's lag with in-process checks",
            ["in-process checks", "loop runs", "median ms", "p90 ms", "max ms"],
            lag_rows,
            f"The `loop` check (every 1 s: the worst lag its 50 ms sampler saw since its last "
            f"run), read from `/health` with the token, over {LAG_SECONDS:g} s of a paced load "
            f"({LOAD_CONNECTIONS} keep-alive connections, a `GET /ok` every "
            f"{LOAD_EVERY * 1000:g} ms each). The checks: every 1 s, half async (3 ms asleep on"
            " the loop), half plain functions (3 ms asleep in their thread). Added by the "
            f"checks (difference of medians): {added:.2f} ms; goal <= 1 ms.",
            write=False,
        ),
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "embedded.md").write_text("\n".join(texts))
    print(f"overhead ratio {ratio}; lag added {added:.2f} ms", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
