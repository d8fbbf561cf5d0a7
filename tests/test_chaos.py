"""Chaos: a private PostgreSQL or Redis stopped (or frozen) and started again under a running
`healthd run` whose check hits it every 200ms (failure_threshold 2, success_threshold 2).

Runs are counted from /metrics (`healthd_check_runs_total` and `healthd_check_status` come
from one scrape, so a status and the runs behind it are consistent). Each bound is checked
on both sides: the status does not flip before the threshold (2 runs of the new outcome at
least; up to 4 when samples land late on a loaded machine) and flips within it (at most
threshold + 3 runs in all after the fault: the run in flight at the stop or start, and late
samples).
In-flight runs never grow older than the timeout (plus loop lag), the server's connections
from healthd return to zero, and healthd's own fd count to its baseline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis as RedisClient

from tests.procs import Healthd
from tests.servers import Postgres, Redis, postgres_server, redis_server

pytestmark = pytest.mark.slow

INTERVAL, TIMEOUT, THRESHOLD = 0.2, 0.15, 2
LOOP_LAG = 0.5  # how late a loaded 2-core machine may cancel a run past its timeout
FLIP_BY = 3.0  # s after the fault (or repair) completes; thresholds need ~0.4 s unloaded
CONFIG = """
server: {{listen: "127.0.0.1:{{port}}", admin_listen: "127.0.0.1:{{admin_port}}",
         token: chaos, show_details: always}}
defaults: {{interval: 200ms, timeout: 150ms, failure_threshold: 2, success_threshold: 2}}
checks:
  - {{name: target, {check}}}
"""
HEALTHD_NAME = "healthd"  # the application/client name both drivers send by default


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    status: str
    runs: dict[str, float]  # by outcome

    @property
    def total(self) -> float:
        return sum(self.runs.values())

    def count(self, *outcomes: str) -> float:
        return sum(self.runs.get(o, 0.0) for o in outcomes)


@dataclass(slots=True)
class Watch:
    """What a poller saw: /metrics samples and the oldest in-flight run in /admin/state."""

    samples: list[Sample] = field(default_factory=list)
    oldest_inflight: float = 0.0

    async def until(self, test: Callable[[Sample], bool], timeout: float) -> Sample:
        seen, end = len(self.samples), time.monotonic() + timeout
        while time.monotonic() < end:
            for sample in self.samples[seen:]:
                if test(sample):
                    return sample
            seen = len(self.samples)
            await asyncio.sleep(0.01)
        last = self.samples[-1] if self.samples else None
        raise AssertionError(f"not seen within {timeout}s; last sample {last}")


def parse(text: str) -> Sample:
    status, runs = "", {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("check") != "target":
                continue
            if s.name == "healthd_check_status" and s.value == 1:
                status = s.labels["status"]
            elif s.name == "healthd_check_runs_total":
                runs[s.labels["outcome"]] = s.value
    return Sample(time.monotonic(), status, runs)


@contextlib.asynccontextmanager
async def watching(daemon: Healthd) -> AsyncIterator[Watch]:
    watch = Watch()
    auth = {"Authorization": "Bearer chaos"}

    async def poll(session: aiohttp.ClientSession) -> None:
        while True:
            async with session.get(daemon.url("/metrics")) as response:
                watch.samples.append(parse(await response.text()))
            async with session.get(daemon.admin_url("/admin/state"), headers=auth) as response:
                inflight = (await response.json())["inflight_checks"]
            ages = [run["age_ms"] / 1000 for run in inflight.values()]
            watch.oldest_inflight = max([watch.oldest_inflight, *ages])
            await asyncio.sleep(0.02)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        poller = asyncio.create_task(poll(session))
        try:
            yield watch
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def settled(count: Callable[[], Awaitable[int]], target: int, within: float = 3.0) -> int:
    """The count once it equals `target` (a run may hold one connection for a moment)."""
    end, seen = time.monotonic() + within, -1
    while time.monotonic() < end:
        seen = await count()
        if seen == target:
            return seen
        await asyncio.sleep(0.03)
    return seen


@dataclass(frozen=True, slots=True)
class Scenario:
    check: str
    break_: Callable[[], None]
    repair: Callable[[], None]
    connections: Callable[[], Awaitable[int]]
    broken: tuple[str, ...]  # outcomes expected while broken


async def ride(tmp_path: Path, scenario: Scenario) -> None:
    """Start healthd on the scenario's check, break the server, repair it, check every bound."""
    bad = scenario.broken
    async with Healthd(tmp_path, CONFIG.format(check=scenario.check)) as daemon:
        assert daemon.proc is not None
        async with watching(daemon) as watch:
            await watch.until(lambda s: s.status == "pass" and s.count("pass") >= 3, 10.0)
            assert await settled(scenario.connections, 0) == 0
            fd_baseline = fds(daemon.proc.pid)

            before = watch.samples[-1]
            issued = time.monotonic()
            await asyncio.to_thread(scenario.break_)
            done, broken = time.monotonic(), watch.samples[-1]
            failing = await watch.until(lambda s: s.status in ("fail", "timeout"), FLIP_BY)
            assert THRESHOLD <= failing.count(*bad) - before.count(*bad) <= THRESHOLD + 2
            assert failing.total - broken.total <= THRESHOLD + 3
            assert failing.at - issued >= (THRESHOLD - 1) * INTERVAL * 0.9 - 0.03
            assert failing.at - done <= FLIP_BY

            await asyncio.sleep(3 * INTERVAL)  # it stays down while the server is
            down = watch.samples[-1]
            assert down.status in ("fail", "timeout")
            assert down.count(*bad) > failing.count(*bad)

            issued = time.monotonic()
            await asyncio.to_thread(scenario.repair)
            done, repaired = time.monotonic(), watch.samples[-1]
            passing = await watch.until(lambda s: s.status == "pass", FLIP_BY)
            assert THRESHOLD <= passing.count("pass") - down.count("pass") <= THRESHOLD + 2
            assert passing.total - repaired.total <= THRESHOLD + 3
            assert passing.at - issued >= (THRESHOLD - 1) * INTERVAL * 0.9 - 0.03
            assert passing.at - done <= FLIP_BY

            await asyncio.sleep(2 * INTERVAL)
            assert watch.samples[-1].status == "pass"
            assert await settled(scenario.connections, 0) == 0
            assert fd_baseline - 2 <= fds(daemon.proc.pid) <= fd_baseline + 2
        assert watch.oldest_inflight <= TIMEOUT + LOOP_LAG, watch.oldest_inflight


def postgres_connections(server: Postgres) -> Callable[[], Awaitable[int]]:
    async def count() -> int:
        conn = await asyncpg.connect(server.dsn(), server_settings={"application_name": "chaos"})
        try:
            sql = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
            return int(await conn.fetchval(sql, HEALTHD_NAME))
        finally:
            await conn.close()

    return count


def redis_connections(server: Redis) -> Callable[[], Awaitable[int]]:
    async def count() -> int:
        client = RedisClient(host="127.0.0.1", port=server.port, password=server.password)
        try:
            clients = await client.client_list()
            return sum(1 for c in clients if c.get("name") == HEALTHD_NAME)
        finally:
            await client.aclose()

    return count


def postmaster(server: Postgres) -> int:
    return int((server.data / "postmaster.pid").read_text().split()[0])


def frozen(pid: Callable[[], int]) -> tuple[Callable[[], None], Callable[[], None]]:
    return (lambda: os.kill(pid(), signal.SIGSTOP)), (lambda: os.kill(pid(), signal.SIGCONT))


async def test_postgres_stopped_and_started(tmp_path: Path) -> None:
    """pg_ctl stop -m fast, then start: refused runs fail it, fresh passes bring it back."""
    with postgres_server() as server:
        check = f"kind: postgres, dsn: '{server.dsn()}'"
        stop, start = (lambda: server.stop("fast")), server.start
        await ride(tmp_path, Scenario(check, stop, start, postgres_connections(server), ("fail",)))


async def test_postgres_frozen_and_thawed(tmp_path: Path) -> None:
    """The postmaster SIGSTOPped: connects hang, runs time out; SIGCONT brings it back."""
    with postgres_server() as server:
        check = f"kind: postgres, dsn: '{server.dsn()}'"
        freeze, thaw = frozen(lambda: postmaster(server))
        try:
            await ride(
                tmp_path, Scenario(check, freeze, thaw, postgres_connections(server), ("timeout",))
            )
        finally:
            os.kill(postmaster(server), signal.SIGCONT)


async def test_redis_killed_and_restarted(tmp_path: Path) -> None:
    """redis-server SIGKILLed, then started on the same port: fail, then pass."""
    with redis_server() as server:
        check = f"kind: redis, url: '{server.url()}'"
        await ride(
            tmp_path,
            Scenario(check, server.stop, server.start, redis_connections(server), ("fail",)),
        )


async def test_redis_frozen_and_thawed(tmp_path: Path) -> None:
    """redis-server SIGSTOPped: runs time out at 150ms; SIGCONT brings it back, nothing leaks."""
    with redis_server() as server:
        check = f"kind: redis, url: '{server.url()}'"
        freeze, thaw = frozen(lambda: server.pid)
        try:
            await ride(
                tmp_path, Scenario(check, freeze, thaw, redis_connections(server), ("timeout",))
            )
        finally:
            os.kill(server.pid, signal.SIGCONT)
