"""The soak rig shared by tests/test_soak.py (short) and bench/soak.py (10,000 runs a kind).

A real `healthd run` holds six checks of every kind, a third of them bad (one refused,
one timing out where the kind can: a refused port, a silent listener, pg_sleep, SLEEP(),
`sleep 5`, a full accept queue); each round is one `GET /health?fresh=1`, so each round
runs every check once. The daemon is watched from outside, which no rebuild of its core
can change: /proc/<pid>/fd and VmRSS, and the task count its SIGUSR1 dump logs.
The servers' own connection counts are read by an identity only our checks use: the
PostgreSQL application_name, the Redis client name, a throwaway MariaDB and RabbitMQ
user, and a private NATS server's /connz.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import aiomysql
import asyncpg
from redis.asyncio import Redis

from tests.conftest import free_port
from tests.procs import Healthd
from tests.servers import (
    blackhole,
    grpc_health,
    mute_udp,
    mysql_user,
    nats_server,
    rabbit_user,
    rabbitmqctl,
    silent_listener,
)

PER_KIND = 6  # checks of each kind: 4 good, 1 refused, 1 timing out (or failing)
BAD_TIMEOUT = "100ms"
TOKEN = "soak"  # a test daemon's admin token


@dataclass(frozen=True, slots=True)
class Usage:
    """The daemon's resources at one moment."""

    round: int
    fds: int
    tasks: int
    rss_mb: float


@dataclass(slots=True)
class Soak:
    outcomes: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    by_check: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    usage: list[Usage] = field(default_factory=list)
    connections: dict[str, tuple[int, int]] = field(default_factory=dict)  # (baseline, end)
    inflight_at_end: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    rounds: int = 0


def checks(
    kind: str, good: dict[str, Any], refused: dict[str, Any], hung: dict[str, Any]
) -> list[dict[str, Any]]:
    """Six checks of `kind`: four `good`, one `refused`, one `hung` (bad ones time out fast)."""
    bad = {"timeout": BAD_TIMEOUT}
    shapes = [good] * (PER_KIND - 2) + [{**refused, **bad}, {**hung, **bad}]
    if kind == "disk":  # one path each (see `config`)
        paths = ["/", "/tmp", "/usr", "/root"]
        shapes = [{**s, "path": p} for s, p in zip(shapes[:4], paths, strict=True)] + shapes[4:]
    return [{"name": f"{kind}-{i}", "kind": kind, **s} for i, s in enumerate(shapes)]


def is_bad(name: str) -> bool:
    """The checks made to fail: the last two of each kind (a loop check cannot be)."""
    kind, index = name.rsplit("-", 1)
    return kind != "loop" and int(index) >= PER_KIND - 2


@dataclass(frozen=True, slots=True)
class Targets:
    me: str  # tag in names: application_name, client_name, throwaway users
    password: str
    refused: int
    silent: int
    blackhole: int
    udp: int
    grpc: int
    nats: int
    nats_monitor: int


def config(t: Targets, grpc_hung: bool = True) -> str:
    """The daemon's config. `grpc_hung` points a gRPC check at the silent listener: grpcio
    keeps such a channel's socket retrying after `close()`, which the grpc check bounds with
    its reconnect backoff (without it fds climbed with the run rate); False: a refused port.
    """
    no = f"127.0.0.1:{t.refused}"
    mute = f"127.0.0.1:{t.silent}"
    pg = f"postgresql://postgres@{{}}/test?application_name={t.me}"
    redis = f"redis://{{}}/0?client_name={t.me}"
    my = f"mysql://{t.me}:{t.password}@{{}}/"
    amqp = f"amqp://{t.me}:{t.password}@{{}}/"
    # Distinct paths: concurrent runs on one path report "statvfs still hanging" (disk.py).
    full = {"warn_free_percent": 99.9, "fail_free_percent": 99.8}  # a failing disk
    every = [
        *checks("tcp", {"address": mute}, {"address": no},
                {"address": f"127.0.0.1:{t.blackhole}"}),
        *checks("http", {"url": "http://127.0.0.1:{port}/livez"}, {"url": f"http://{no}/"},
                {"url": f"http://{mute}/"}),
        *checks("remote", {"url": "http://127.0.0.1:{port}/livez"}, {"url": f"http://{no}/"},
                {"url": f"http://{mute}/"}),
        *checks("dns", {"host": "localhost"}, {"host": "localhost", "resolver": no},
                {"host": "example.com", "resolver": f"127.0.0.1:{t.udp}"}),
        *checks("postgres", {"dsn": pg.format("127.0.0.1:5432")}, {"dsn": pg.format(no)},
                {"dsn": pg.format("127.0.0.1:5432"), "query": "SELECT pg_sleep(5)"}),
        *checks("mysql", {"dsn": my.format("127.0.0.1:3306")}, {"dsn": my.format(no)},
                {"dsn": my.format("127.0.0.1:3306"), "query": "SELECT SLEEP(5)"}),
        *checks("redis", {"url": redis.format("127.0.0.1:6379")}, {"url": redis.format(no)},
                {"url": redis.format(mute)}),
        *checks("amqp", {"url": amqp.format("127.0.0.1:5672")}, {"url": amqp.format(no)},
                {"url": amqp.format(mute)}),
        *checks("mqtt", {"url": "mqtt://127.0.0.1:1883"}, {"url": f"mqtt://{no}"},
                {"url": f"mqtt://{mute}"}),
        *checks("nats", {"url": f"nats://127.0.0.1:{t.nats}"}, {"url": f"nats://{no}"},
                {"url": f"nats://{mute}"}),
        *checks("grpc", {"target": f"127.0.0.1:{t.grpc}"}, {"target": no},
                {"target": mute if grpc_hung else no}),
        *checks("exec", {"command": ["true"]}, {"command": ["sh", "-c", "exit 2"]},
                {"command": ["sleep", "5"]}),
        *checks("disk", {"path": "/", "warn_free_percent": 1, "fail_free_percent": 0},
                {**full, "path": "/var"}, {**full, "path": "/etc"}),
        *checks("heartbeat", {"ttl": "1h"}, {"ttl": "1h"}, {"ttl": "1h"}),
        *checks("loop", {}, {}, {}),
    ]  # fmt: skip
    server = {"listen": "127.0.0.1:{port}", "admin_listen": "127.0.0.1:{admin_port}",
              "token": TOKEN, "show_details": "always"}  # fmt: skip
    top = {"server": server, "deadline": {"default": "10s", "max": "30s"},
           "defaults": {"interval": "1h", "timeout": "3s"}, "checks": every}  # fmt: skip
    return json.dumps(top, indent=1)


async def usage(daemon: Healthd, round_: int) -> Usage:
    """fds and RSS from /proc, the task count from the SIGUSR1 diagnostics line."""
    assert daemon.proc is not None
    pid, seen = daemon.proc.pid, len(daemon.lines)
    daemon.signal(signal.SIGUSR1)
    async with asyncio.timeout(10):
        while not any("diagnostics: " in line for line in daemon.lines[seen:]):
            await asyncio.sleep(0.01)
    line = next(line for line in daemon.lines[seen:] if "diagnostics: " in line)
    found = re.search(r'\\?"tasks\\?":\s*(\d+)', line)  # text or JSON log format
    assert found is not None, line
    tasks = int(found.group(1))
    rss = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if "VmRSS" in x)
    return Usage(round_, len(os.listdir(f"/proc/{pid}/fd")), tasks, int(rss.split()[1]) / 1024)


def counters(t: Targets) -> dict[str, Callable[[], Awaitable[int]]]:
    """Each server's count of connections from our checks (by our identity)."""

    async def postgres() -> int:
        conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
        try:
            sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = 'test'"
            sql += " AND application_name = $1"
            return int(await conn.fetchval(sql, t.me))
        finally:
            await conn.close()

    async def mariadb() -> int:
        conn = await aiomysql.connect(host="127.0.0.1", port=3306, user="root", db="test")
        try:
            async with conn.cursor() as cur:
                await cur.execute(
                    "SELECT COUNT(*) FROM information_schema.processlist WHERE user = %s", (t.me,)
                )
                row = await cur.fetchone()
            return int(row[0])
        finally:
            conn.close()

    async def redis() -> int:
        client = Redis(host="127.0.0.1", port=6379)
        try:
            return sum(1 for c in await client.client_list() if c.get("name") == t.me)
        finally:
            await client.aclose()

    async def rabbitmq() -> int:
        out = await asyncio.to_thread(rabbitmqctl, "list_connections", "user")
        return sum(1 for line in out.splitlines() if line.strip() == t.me)

    async def nats() -> int:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{t.nats_monitor}/connz"
            async with session.get(url) as response:
                return int((await response.json())["num_connections"])

    return {"postgres": postgres, "mariadb": mariadb, "redis": redis, "rabbitmq": rabbitmq,
            "nats": nats}  # fmt: skip


async def settled(count: Callable[[], Awaitable[int]], target: int, tries: int) -> int:
    """The count once it is back to `target` (a run in flight may hold one for a moment)."""
    seen = -1
    for _ in range(tries):
        seen = await count()
        if seen <= target:
            return seen
        await asyncio.sleep(0.2)
    return seen


async def soak(
    directory: Path,
    rounds: int,
    samples: int = 4,
    log: Callable[[str], None] = print,
    grpc_hung: bool = True,
) -> Soak:
    """`rounds` fresh evaluations (PER_KIND runs of every kind each); usage at `samples`
    evenly spaced points after a warm-up round."""
    me, password = f"healthd_soak_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    monitor = free_port()
    report = Soak(rounds=rounds)
    with blackhole() as hole, mute_udp() as udp, rabbit_user(me, password):
        async with (
            mysql_user(me, password),
            silent_listener() as silent,
            grpc_health() as grpc_port,
            nats_server("-m", str(monitor), login=False) as (_, nats_port),
        ):
            t = Targets(me, password, free_port(), silent, hole, udp, grpc_port, nats_port, monitor)
            count = counters(t)
            baseline = {name: await c() for name, c in count.items()}
            async with Healthd(directory, config(t, grpc_hung), "soak") as daemon:
                report = await drive(daemon, rounds, samples, log)
            for name, c in count.items():
                tries = 3 if name == "rabbitmq" else 25
                report.connections[name] = (baseline[name], await settled(c, baseline[name], tries))
    return report


SETTLE_TRIES = 16  # tries 0.25 s apart for the daemon's fds to come back after the last round


async def drive(daemon: Healthd, rounds: int, samples: int, log: Callable[[str], None]) -> Soak:
    report = Soak(rounds=rounds)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for i in range(PER_KIND - 2):  # the good heartbeats: one beat each, ttl 1h
            url = daemon.admin_url(f"/heartbeat/heartbeat-{i}")
            async with session.post(url, json={"status": "pass"}, headers=auth) as response:
                assert response.status < 300, await response.text()
        marks = {1 + (rounds - 1) * k // samples for k in range(samples + 1)}
        started = time.monotonic()
        for n in range(1, rounds + 1):
            async with session.get(daemon.url("/health?fresh=1")) as response:
                body = await response.json()
            for name, check in body["checks"].items():
                outcome = check.get("last_outcome", "none")
                report.outcomes[check["kind"]][outcome] += 1
                report.by_check[name][outcome] += 1
            if n in marks:
                report.usage.append(await usage(daemon, n))
                log(f"round {n}/{rounds}: {report.usage[-1]}")
        report.seconds = time.monotonic() - started
        await asyncio.sleep(0.5)  # cancelled runs' clean-up (killpg grace, server cancels)
        # grpcio closes a silent target's socket on its own timer, up to a few seconds
        # after the run: wait for the count to come back (a leak per run never does).
        floor = min(u.fds for u in report.usage)
        for _ in range(SETTLE_TRIES):
            end = await usage(daemon, rounds + 1)
            if end.fds <= floor + 2:
                break
            await asyncio.sleep(0.25)
        report.usage.append(end)
        async with session.get(daemon.admin_url("/admin/state"), headers=auth) as response:
            report.inflight_at_end = (await response.json())["inflight_checks"]
    return report
