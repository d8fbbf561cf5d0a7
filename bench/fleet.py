"""The fleet's cost (reference §14): N healthd instances, and M simulated publishers, on one etcd.

    healthd   N real `healthd run` processes (a one-check config, `logging.level: debug` so
              each logs the moment its watch applies another's report). One instance at a
              time is drained and made ready again (POST /admin/drain?force=1, /admin/ready):
              the time from the admin call to the line on each other instance is one sample;
              the slowest of the N-1 is "to reach all".
    steady    etcd's own counter of gRPC messages received (its JSON gateway turns each HTTP
              call into one) over a quiet window: requests per second, and per instance.
    simulated M publishers in this process, as instances would be: a lease each, a report
              put on it, a keep-alive every ttl/3, and a watch of the prefix each; one of them
              re-publishes and the time until every watch has the event is one sample.

Usage: .venv/bin/python bench/fleet.py [--instances 50] [--publishers 200] [--rounds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from _common import LoggedProcess, free_port, python, raise_nofile, write_table

from healthd.fleet.etcd import Etcd
from healthd.fleet.view import Report

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.fleetrig import EtcdServer

TTL = 10.0
STEADY = 15.0
AUTH = {"Authorization": "Bearer t"}

CONFIG = """
server: {{listen: "127.0.0.1:{port}", admin_listen: "127.0.0.1:{admin}", token: t}}
logging: {{level: debug}}
fleet: {{etcd: ["{etcd}"], service: bench, instance: i{n}, ttl: {ttl:g}s, max_draining: 0}}
checks:
  - {{name: etcd, kind: tcp, address: "127.0.0.1:{etcd_port}", interval: 10s, shared: true}}
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def etcd_messages(session: aiohttp.ClientSession, url: str) -> float:
    """etcd's gRPC messages received so far (health checks aside)."""
    async with session.get(f"{url}/metrics") as r:
        text = await r.text()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("grpc_server_msg_received_total") and "Health" not in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def steady_rate(session: aiohttp.ClientSession, url: str) -> float:
    before, start = await etcd_messages(session, url), time.monotonic()
    await asyncio.sleep(STEADY)
    return (await etcd_messages(session, url) - before) / (time.monotonic() - start)


async def all_seen(session: aiohttp.ClientSession, admin: int, n: int) -> None:
    end = time.monotonic() + 60
    while time.monotonic() < end:
        url = f"http://127.0.0.1:{admin}/admin/fleet"
        async with session.get(url, headers=AUTH) as r:
            if len((await r.json())["instances"]) == n:
                return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"the instance on {admin} never saw all {n}")


async def healthd_fleet(
    etcd: EtcdServer, n: int, rounds: int, folder: Path
) -> tuple[list[float], list[float], float]:
    procs, ports = [], []
    for i in range(n):
        port, admin = free_port(), free_port()
        path = folder / f"i{i}.yaml"
        path.write_text(
            CONFIG.format(port=port, admin=admin, etcd=etcd.url, n=i, ttl=TTL, etcd_port=etcd.port)
        )
        proc = LoggedProcess()
        await proc.start([python(), "-m", "healthd", "run", "-c", str(path)])
        procs.append(proc)
        ports.append(admin)
    try:
        for proc in procs:
            await proc.line("listening on", within=120)
        async with aiohttp.ClientSession() as session:
            for admin in ports:  # everyone sees everyone
                await all_seen(session, admin, n)
            await asyncio.sleep(3)
            rate = await steady_rate(session, etcd.url)
            each: list[float] = []
            slowest: list[float] = []
            for r in range(rounds):
                k = r % n
                for action, state in (("drain?force=1", "draining"), ("ready", "healthy")):
                    marks = [len(p.lines) for p in procs]
                    sent = time.time()
                    url = f"http://127.0.0.1:{ports[k]}/admin/{action}"
                    async with session.post(url, headers=AUTH) as answer:
                        assert answer.status == 200, await answer.text()
                    seen = []
                    for j, proc in enumerate(procs):
                        if j != k:
                            at, _ = await proc.line(f"fleet: view: i{k} {state}", 30, marks[j])
                            seen.append(at - sent)
                    each += seen
                    slowest.append(max(seen))
        return each, slowest, rate
    finally:
        await asyncio.gather(*(p.kill() for p in procs))


async def simulated(
    etcd: EtcdServer, m: int, rounds: int
) -> tuple[list[float], list[float], float]:
    prefix = "/healthd/sim/"
    clients = [Etcd([etcd.url], timeout=5.0) for _ in range(m)]
    leases = []
    for i, client in enumerate(clients):
        lease = await client.grant(int(TTL))
        leases.append(lease)
        report = Report(f"p{i}", {"readiness": "healthy"}, False, frozenset())
        await client.put(f"{prefix}instances/p{i}", report.encode(), lease)
    revision, _ = await clients[0].range(prefix)
    arrived: dict[int, asyncio.Event] = {}
    times: dict[int, list[float]] = {}

    async def watch(client: Etcd) -> None:
        async for batch in client.watch(prefix, revision):
            for _kind, key, value in batch:
                match = re.search(r'"at":([0-9.]+)', value)
                if key.endswith("/p0") and match:
                    times.setdefault(round(float(match.group(1)) * 1000), []).append(time.time())
                    arrived[0].set()

    async def keepalive(client: Etcd, lease: int) -> None:
        while True:
            await asyncio.sleep(TTL / 3)
            await client.keepalive(lease)

    tasks = [asyncio.create_task(watch(c)) for c in clients]
    tasks += [
        asyncio.create_task(keepalive(c, lease)) for c, lease in zip(clients, leases, strict=True)
    ]
    samples: list[float] = []
    slowest: list[float] = []
    try:
        arrived[0] = asyncio.Event()
        await asyncio.sleep(3)
        async with aiohttp.ClientSession() as session:
            rate = await steady_rate(session, etcd.url)
        for r in range(rounds):
            sent = time.time()
            state = "degraded" if r % 2 == 0 else "healthy"
            report = Report("p0", {"readiness": state}, False, frozenset(), sent)
            stamp = round(round(sent, 3) * 1000)
            await clients[0].put(f"{prefix}instances/p0", report.encode(), leases[0])
            end = time.monotonic() + 30
            while len(times.get(stamp, [])) < m and time.monotonic() < end:
                arrived[0].clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(arrived[0].wait(), 1)
            got = times.get(stamp, [])
            assert len(got) == m, f"round {r}: {len(got)} of {m} watches saw it"
            samples += [t - sent for t in got]
            slowest.append(max(t - sent for t in got))
        return samples, slowest, rate
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client, lease in zip(clients, leases, strict=True):
            try:
                await client.revoke(lease)
            finally:
                await client.close()


def ms(x: float) -> str:
    return f"{x * 1000:.1f}"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=50)
    parser.add_argument("--publishers", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    raise_nofile(8192)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        etcd = EtcdServer("etcd", folder)
        etcd.start()
        try:
            each, slowest, rate = await healthd_fleet(etcd, args.instances, args.rounds, folder)
            sim, sim_all, sim_rate = await simulated(etcd, args.publishers, args.rounds)
        finally:
            etcd.stop()
    n, m = args.instances, args.publishers
    rows = [
        [f"{n} healthd instances", ms(statistics.median(each)), ms(pct(each, 0.99)),
         ms(statistics.median(slowest)), ms(pct(slowest, 0.99)), f"{rate:.1f}", f"{rate / n:.2f}"],
        [f"{m} simulated publishers", ms(statistics.median(sim)), ms(pct(sim, 0.99)),
         ms(statistics.median(sim_all)), ms(pct(sim_all, 0.99)), f"{sim_rate:.1f}",
         f"{sim_rate / m:.2f}"],
    ]  # fmt: skip
    notes = (
        f"ttl {TTL:g}s (keep-alive every {TTL / 3:.1f}s); {args.rounds * 2} transitions "
        f"(drain, ready) for healthd, {args.rounds} re-publishes for the simulation; "
        f"steady state over {STEADY:g}s from etcd's grpc_server_msg_received_total. "
        "A sample is the time from the admin call (or the put) to the moment one other "
        "instance (or watch) applied it; `to all` is the slowest of the others per transition. "
        "Everything (etcd, the instances, this script) shares the machine's 2 cores."
    )
    write_table(
        "fleet",
        "Fleet: a transition reaching the other instances through one etcd",
        ["fleet", "to each p50 ms", "to each p99 ms", "to all p50 ms", "to all p99 ms",
         "etcd req/s steady", "req/s per instance"],
        rows, notes, write=not args.no_write,
    )  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
