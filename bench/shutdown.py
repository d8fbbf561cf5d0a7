"""Rolling restart under probe load: requests dropped, and time from SIGTERM to readiness 503.

For N concurrent clients: start healthd A and B, load A's /readyz from N clients, SIGTERM A.
Each client acts as its own load balancer: on A's first 503 it moves to B (what an endpoint
controller does when readiness fails). A request that raises or returns a cut body is dropped
(goal: 0). Prints a table and writes bench/results/shutdown.md. About 5 s per row.

    .venv/bin/python bench/shutdown.py [N ...]
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.procs import Healthd  # noqa: E402

DRAIN, GRACE, LOAD = 1.0, 2.0, 1.0
CONFIG = f"""
server: {{listen: "127.0.0.1:{{port}}", admin_listen: "127.0.0.1:{{admin_port}}"}}
shutdown: {{drain_delay: {DRAIN}s, grace: {GRACE}s}}
checks:
  - {{name: loop, kind: loop, interval: 200ms, timeout: 100ms}}
"""


@dataclass(slots=True)
class Tally:
    requests: int = 0
    on_a: int = 0
    dropped: list[str] = field(default_factory=list)
    first_503: float | None = None
    switched: list[float] = field(default_factory=list)


async def client(a: str, b: str, stop: asyncio.Event, tally: Tally) -> None:
    """Probe A until it answers 503, then B; count every request that gets no full answer."""
    target = a
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            try:
                async with session.get(target + "/readyz") as resp:
                    json.loads(await resp.read())
                    tally.requests += 1
                    if target == a:
                        tally.on_a += 1
                        if resp.status == 503:
                            now = time.monotonic()
                            tally.first_503 = min(tally.first_503 or now, now)
                            tally.switched.append(now)
                            target = b
            except (aiohttp.ClientError, ValueError, OSError) as exc:
                tally.requests += 1
                tally.dropped.append(type(exc).__name__)
                await asyncio.sleep(0.01)


async def wait_ready(h: Healthd) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(250):
            async with session.get(h.url("/readyz")) as resp:
                if resp.status == 200:
                    return
            await asyncio.sleep(0.02)
    raise RuntimeError("healthd never became ready")


async def rolling_restart(n: int, directory: Path) -> dict[str, float | int | str]:
    a, b = Healthd(directory, CONFIG, name=f"a{n}"), Healthd(directory, CONFIG, name=f"b{n}")
    async with a, b:
        await asyncio.gather(wait_ready(a), wait_ready(b))
        stop, tally = asyncio.Event(), Tally()
        tasks = [asyncio.create_task(client(a.url(""), b.url(""), stop, tally)) for _ in range(n)]
        await asyncio.sleep(LOAD)
        before = tally.requests
        t_sig = time.monotonic()
        a.signal(signal.SIGTERM)
        code = await a.wait(DRAIN + GRACE + 5)
        t_exit = time.monotonic()
        await asyncio.sleep(0.2)
        stop.set()
        await asyncio.gather(*tasks)
    first = tally.first_503
    return {
        "clients": n,
        "req/s before": round(before / LOAD),
        "requests": tally.requests,
        "dropped": len(tally.dropped),
        "SIGTERM→503 ms": round((first - t_sig) * 1000, 1) if first else "never",
        "all moved ms": round((max(tally.switched) - t_sig) * 1000, 1)
        if len(tally.switched) == n
        else f"{len(tally.switched)}/{n}",
        "exit": code,
        "exit after s": round(t_exit - t_sig, 2),
    }


def table(rows: list[dict[str, float | int | str]]) -> str:
    heads = list(rows[0])
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    lines += ["| " + " | ".join(str(r[h]) for h in heads) + " |" for r in rows]
    return "\n".join(lines)


async def main(counts: list[int]) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in counts:
            rows.append(await rolling_restart(n, Path(tmp)))
            print(rows[-1], flush=True)
    out = table(rows)
    print(out)
    import aiohttp as _aiohttp

    header = (
        "# Rolling restart under probe load (bench/shutdown.py)\n\n"
        f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"aiohttp {_aiohttp.__version__}; drain_delay {DRAIN}s, grace {GRACE}s, {LOAD}s of load "
        "before SIGTERM; clients and both healthd processes share the machine.\n"
        "`dropped`: requests with no full answer (goal 0). `SIGTERM→503`: first 503 any client "
        "saw. `all moved`: the last client's move to B. `exit after`: SIGTERM to A's exit.\n\n"
    )
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "shutdown.md").write_text(header + out + "\n")


if __name__ == "__main__":
    asyncio.run(main([int(x) for x in sys.argv[1:]] or [4, 16, 64]))
