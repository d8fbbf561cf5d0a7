"""DESIGN §14 end to end: real `healthd run` processes sharing one real etcd (Debian's 3.4).

Each test uses its own `service` name, so the instances of one test never see another's.
ttl 3 s (keep-alive every 1 s), settle 1.5 s (the default for that ttl), tcp checks every
300 ms: a refused port is the shared database that fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import free_port, need
from tests.fleetrig import EtcdServer
from tests.procs import Healthd

pytestmark = pytest.mark.slow

TTL = 3.0
AUTH = {"Authorization": "Bearer t"}
_services = itertools.count()


def config(etcd: str, service: str, instance: str, address: str, **fleet: Any) -> str:
    extra = "".join(f", {k}: {v}" for k, v in fleet.items())
    return f"""
server: {{listen: "127.0.0.1:{{port}}", admin_listen: "127.0.0.1:{{admin_port}}", token: t,
          show_details: always}}
shutdown: {{drain_delay: 100ms, grace: 1s}}
fleet: {{etcd: ["{etcd}"], service: {service}, instance: {instance}, ttl: {TTL:g}s{extra}}}
checks:
  - {{name: db, kind: tcp, address: "{address}", shared: true, interval: 300ms, timeout: 200ms}}
"""


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    binary = need("etcd", "for the fleet tests (Debian etcd-server)")
    server = EtcdServer(binary, tmp_path_factory.mktemp("etcd"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        yield s


@contextlib.asynccontextmanager
async def fleet_of(
    tmp_path: Path, etcd: EtcdServer, addresses: list[str], **fleet: Any
) -> AsyncIterator[list[Healthd]]:
    """Instances i0, i1, ... of a fresh service, each checking its own address as `db`."""
    service = f"svc{next(_services)}"
    procs = [
        Healthd(tmp_path, config(etcd.url, service, f"i{n}", a, **fleet), name=f"i{n}")
        for n, a in enumerate(addresses)
    ]
    try:
        await asyncio.gather(*(h.start() for h in procs))
        yield procs
    finally:
        await asyncio.gather(*(h.kill() for h in procs))


async def readyz(session: aiohttp.ClientSession, h: Healthd) -> tuple[int, dict[str, Any]]:
    async with session.get(h.url("/readyz")) as r:
        return r.status, await r.json()


async def answers(session: aiohttp.ClientSession, procs: list[Healthd]) -> list[tuple[int, Any]]:
    """Every instance's /readyz (code, body); the last ones are kept for failure messages."""
    got = [await readyz(session, h) for h in procs]
    LAST[:] = got
    return got


LAST: list[Any] = []


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> float:
    """Poll `check` until it holds; the seconds it took (fails after `timeout`)."""
    start = time.monotonic()
    LAST.clear()
    while True:
        if await check():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout}s: {what}; last answers {LAST}")
        await asyncio.sleep(0.1)


async def admin_fleet(session: aiohttp.ClientSession, h: Healthd) -> dict[str, Any]:
    async with session.get(h.admin_url("/admin/fleet"), headers=AUTH) as r:
        assert r.status == 200
        body: dict[str, Any] = await r.json()
        return body


async def metric(session: aiohttp.ClientSession, h: Healthd, name: str) -> float:
    async with session.get(h.url("/metrics")) as r:
        text = await r.text()
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def refused() -> str:
    return f"127.0.0.1:{free_port()}"


@contextlib.asynccontextmanager
async def listener() -> AsyncIterator[tuple[str, asyncio.Server]]:
    """A TCP port that accepts (a database that is up); `close()` it to refuse from then on."""

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}", server
    finally:
        server.close()


def readiness_moves(h: Healthd, since: int = 0) -> list[str]:
    """The `group readiness: a → b` lines the instance logged after line `since`."""
    return [
        line.split("group readiness: ")[1] for line in h.lines[since:] if "group readiness:" in line
    ]


async def test_a_database_every_instance_sees_failing_keeps_them_all_in_rotation(
    tmp_path: Path, etcd: EtcdServer, session: aiohttp.ClientSession
) -> None:
    """Five instances sharing a refused database: each answers 200 degraded, with the reason."""
    db = refused()
    async with fleet_of(tmp_path, etcd, [db] * 5) as procs:

        async def all_degraded() -> bool:
            return all(
                code == 200
                and body["status"] == "degraded"
                and body.get("fleet", {}).get("db")
                == "fleet: 5/5 instances see db failing; staying in rotation"
                for code, body in await answers(session, procs)
            )

        await eventually(all_degraded, 15, "all five 200 degraded with the fleet reason")
        async with session.get(procs[0].url("/readyz?verbose")) as r:
            text = await r.text()
        assert r.status == 200
        assert "[-]db failed: connection refused" in text
        assert "[+]fleet: 5/5 instances see db failing; staying in rotation" in text
        assert await metric(session, procs[0], 'healthd_fleet_panic{check="db"}') == 1
        assert await metric(session, procs[0], 'healthd_fleet_instances{state="degraded"}') == 5
        async with session.get(procs[0].admin_url("/admin/state"), headers=AUTH) as r:
            fleet = (await r.json())["fleet"]
        assert fleet == {"connected": True, "problem": None, "instances": 5, "slot": None,
                         "rules": {"db": "panic"}}  # fmt: skip


async def test_a_failure_only_one_instance_sees_still_takes_it_out(
    tmp_path: Path, etcd: EtcdServer, session: aiohttp.ClientSession
) -> None:
    """Only one instance's database is refused: that one is 503, the four others 200 healthy."""
    async with listener() as (up, _), fleet_of(tmp_path, etcd, [refused()] + [up] * 4) as procs:

        async def settled() -> bool:
            lone, *others = await answers(session, procs)
            return (
                lone[0] == 503
                and lone[1]["status"] == "unhealthy"
                and all(code == 200 and body["status"] == "healthy" for code, body in others)
            )

        await eventually(settled, 15, "i0 503 unhealthy, the others 200 healthy")
        view = await admin_fleet(session, procs[1])
        assert view["instances"]["i0"]["failing_shared"] == ["db"]
        assert view["instances"]["i0"]["state"] == "unhealthy"
        assert await metric(session, procs[0], 'healthd_fleet_panic{check="db"}') == 0
        # The lone instance never went through `degraded`: settling held it where it was.
        assert readiness_moves(procs[0]) == ["none → unknown", "unknown → unhealthy"]


@pytest.mark.parametrize(("threshold", "failing"), [(None, "unhealthy"), ("30%", "degraded")])
async def test_two_of_five_failing_is_below_the_default_panic_threshold(
    tmp_path: Path,
    etcd: EtcdServer,
    session: aiohttp.ClientSession,
    threshold: str | None,
    failing: str,
) -> None:
    """2 of 5 see the database failing: under the default `panic_threshold` (50 %) that is
    no panic, so those two stay 503 unhealthy; with `panic_threshold: 30%` it is one, and
    they stay in rotation (200 degraded). The threshold reaches the rule either way."""
    extra = {"panic_threshold": threshold} if threshold else {}
    addresses = [refused(), refused()] + ["UP"] * 3
    async with listener() as (up, _):
        addresses = [up if a == "UP" else a for a in addresses]
        async with fleet_of(tmp_path, etcd, addresses, **extra) as procs:

            async def settled() -> bool:
                got = await answers(session, procs)
                view = await admin_fleet(session, procs[4])
                return (
                    len(view["instances"]) == 5
                    and all(body["status"] == failing for _, body in got[:2])
                    and all(body["status"] == "healthy" for _, body in got[2:])
                )

            await eventually(settled, 15, f"i0, i1 {failing}; i2..i4 healthy")
            code = 503 if failing == "unhealthy" else 200
            for _ in range(10):  # and it holds: no late panic
                assert [c for c, _ in await answers(session, procs)] == [code] * 2 + [200] * 3
                await asyncio.sleep(0.1)
            panic = 0 if failing == "unhealthy" else 1
            assert await metric(session, procs[0], 'healthd_fleet_panic{check="db"}') == panic


async def test_a_fleet_failing_within_one_second_converges_without_flipping(
    tmp_path: Path, etcd: EtcdServer, session: aiohttp.ClientSession
) -> None:
    """All five see the database go within the same second: all reach degraded within one
    ttl, and none moves more than once (no unhealthy on the way, no flip back)."""
    async with listener() as (up, server), fleet_of(tmp_path, etcd, [up] * 5) as procs:

        async def all_healthy() -> bool:
            return all(body["status"] == "healthy" for _, body in await answers(session, procs))

        await eventually(all_healthy, 15, "all five healthy first")
        marks = [len(h.lines) for h in procs]
        server.close()  # refused from now on: each instance sees it on its next run (300 ms)
        broke = time.monotonic()

        async def all_degraded() -> bool:
            return all(body["status"] == "degraded" for _, body in await answers(session, procs))

        took = await eventually(all_degraded, TTL + 5, "all five degraded")
        assert took <= TTL, f"converged after {took:.2f}s, more than one ttl"
        await asyncio.sleep(max(0.0, broke + 2 * TTL - time.monotonic()))  # settle ran out twice
        for h, mark in zip(procs, marks, strict=True):
            assert readiness_moves(h, mark) == ["healthy → degraded"], h.lines[mark:]
            assert (await readyz(session, h))[0] == 200


async def test_drain_slots_are_shared_and_go_with_a_killed_holder(
    tmp_path: Path, etcd: EtcdServer, session: aiohttp.ClientSession
) -> None:
    """max_draining 1: a second drain gets 409 naming the first; ?force=1 drains anyway;
    SIGKILL of the holder frees the slot, and it leaves the view, within ttl."""
    async with listener() as (up, _), fleet_of(tmp_path, etcd, [up] * 3, max_draining=1) as procs:
        first, second, third = procs

        async def three() -> bool:
            healthy = all(b["status"] == "healthy" for _, b in await answers(session, procs))
            return healthy and len((await admin_fleet(session, second))["instances"]) == 3

        await eventually(three, 10, "three instances in the view")
        async with session.post(first.admin_url("/admin/drain"), headers=AUTH) as r:
            assert (r.status, await r.json()) == (200, {"draining": True, "slot": 0})
        async with session.post(second.admin_url("/admin/drain"), headers=AUTH) as r:
            body = await r.json()
            assert r.status == 409, body
        assert body["holders"] == ["i0"]
        assert "i0" in body["error"]
        assert (await readyz(session, second))[0] == 200  # a refused drain changes nothing
        async with session.post(third.admin_url("/admin/drain?force=1"), headers=AUTH) as r:
            assert r.status == 200
            assert (await r.json())["slot"] is None
        async with session.post(third.admin_url("/admin/ready"), headers=AUTH) as r:
            assert r.status == 200

        first.signal(signal.SIGKILL)
        killed = time.monotonic()

        async def gone() -> bool:
            return "i0" not in (await admin_fleet(session, second))["instances"]

        left = await eventually(gone, TTL + 5, "i0 leaves the view")
        assert left <= TTL + 0.5, f"i0 left the view {left:.2f}s after SIGKILL"
        async with session.post(second.admin_url("/admin/drain"), headers=AUTH) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["slot"] == 0
        assert time.monotonic() - killed <= TTL + 1.0
        async with session.post(second.admin_url("/admin/ready"), headers=AUTH) as r:
            assert r.status == 200
        view = await admin_fleet(session, third)
        assert view["slots"] == {}, "ready gave the slot back"


@pytest.mark.parametrize("how", ["killed", "frozen"])
async def test_etcd_stopped_mid_run_falls_back_to_local_semantics_and_recovers(
    tmp_path: Path, etcd: EtcdServer, session: aiohttp.ClientSession, how: str
) -> None:
    """etcd killed (refused) or frozen (SIGSTOP: every call hangs): probes answer within their
    budget, as without a fleet (503, the db counts), healthd_fleet_connected 0; etcd back
    (restarted on its data, or SIGCONT): the view and the panic rule return."""
    async with fleet_of(tmp_path, etcd, [refused()] * 3) as procs:

        async def panic() -> bool:
            return all(code == 200 for code, _ in await answers(session, procs))

        await eventually(panic, 15, "the three in panic (200 degraded)")
        if how == "killed":
            etcd.stop(signal.SIGKILL)
        else:
            etcd.signal(signal.SIGSTOP)
        try:
            slowest = 0.0

            async def local() -> bool:
                nonlocal slowest
                ok = True
                for h in procs:
                    start = time.monotonic()
                    async with session.get(h.url("/readyz?timeout=300ms")) as r:
                        code, body = r.status, await r.json()
                    slowest = max(slowest, time.monotonic() - start)
                    ok = (
                        ok and code == 503 and body["status"] == "unhealthy" and "fleet" not in body
                    )
                return ok

            await eventually(local, TTL + 5, "local semantics once etcd is gone")
            assert slowest < 0.3, f"a probe took {slowest * 1000:.0f}ms with etcd down"
            for h in procs:
                assert await metric(session, h, "healthd_fleet_connected") == 0
                assert sum("fleet: etcd unreachable" in line for line in h.lines) == 1
            # draining never depends on etcd: the drain is taken at once, without a slot
            start = time.monotonic()
            async with session.post(procs[0].admin_url("/admin/drain"), headers=AUTH) as r:
                status, body = r.status, await r.json()
            assert status == 200, body
            assert time.monotonic() - start < 1.0
            assert body["draining"] is True, body
            assert body["slot"] is None, body
            assert (await readyz(session, procs[0]))[1]["status"] == "draining"
            async with session.post(procs[0].admin_url("/admin/ready"), headers=AUTH) as r:
                assert r.status == 200, await r.text()
        finally:
            if how == "killed":
                etcd.start()
            else:
                etcd.signal(signal.SIGCONT)

        await eventually(panic, 20, "the panic rule back with etcd")
        for h in procs:
            assert await metric(session, h, "healthd_fleet_connected") == 1
            assert len((await admin_fleet(session, h))["instances"]) == 3


async def test_without_etcd_nothing_blocks_and_no_secret_shows(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """etcd never reachable (credentials in its URL): the daemon serves local semantics at
    once, reports connected 0, and the password appears nowhere it writes."""
    dead = f"http://root:s3cr3t-pw@127.0.0.1:{free_port()}"
    async with listener() as (up, _):
        text = config(dead, "lonely", "solo", up)
        async with Healthd(tmp_path, text) as h:

            async def healthy() -> bool:
                return bool((await readyz(session, h))[1]["status"] == "healthy")

            await eventually(healthy, 10, "healthy with etcd unreachable")
            assert await metric(session, h, "healthd_fleet_connected") == 0
            outputs = []
            for path in ("/admin/fleet", "/admin/state"):
                async with session.get(h.admin_url(path), headers=AUTH) as r:
                    outputs.append(await r.text())
            async with session.get(h.url("/metrics")) as r:
                outputs.append(await r.text())
            fleet = await admin_fleet(session, h)
            assert fleet["connected"] is False
            async with session.get(h.admin_url("/admin/state"), headers=AUTH) as r:
                state = (await r.json())["fleet"]
            assert (state["connected"], state["instances"], state["slot"]) == (False, 0, None)
            assert state["problem"], "why it is not connected"
            assert fleet["endpoints"] == [dead.replace("root:s3cr3t-pw@", "")]
            await asyncio.sleep(1.0)  # a few reconnect attempts, each one logged at most once
        assert sum("etcd unreachable" in line for line in h.lines) == 1
        for text in [*outputs, *h.lines]:
            assert "s3cr3t" not in text


async def test_sigterm_takes_a_free_slot_and_leaves_the_view_at_exit(
    tmp_path: Path, etcd: EtcdServer, session: aiohttp.ClientSession
) -> None:
    """SIGTERM drains at once and takes the free slot; at exit the lease is revoked, so the
    instance leaves the others' view at once (well before ttl) and its slot is free again."""
    async with listener() as (up, _), fleet_of(tmp_path, etcd, [up] * 2) as procs:
        leaving, staying = procs

        async def both() -> bool:
            return len((await admin_fleet(session, staying))["instances"]) == 2

        await eventually(both, 10, "two instances in the view")
        leaving.signal(signal.SIGTERM)  # drain_delay 100 ms, then exit

        assert await leaving.wait(10) == 0

        async def gone() -> bool:
            view = await admin_fleet(session, staying)
            return "i0" not in view["instances"] and view["slots"] == {}

        took = await eventually(gone, TTL, "i0 and its slot gone after its exit")
        assert took < TTL / 2, f"left {took:.2f}s after exit: the lease was not revoked"
        assert any("drain slot 0 taken for the shutdown" in line for line in leaving.lines)


async def test_etcd_authentication_with_credentials_in_the_url(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """An etcd with auth on: `user:password@` in the URL authenticates (connected, in the
    view); a wrong password stays disconnected; neither password is written anywhere."""
    server = EtcdServer(need("etcd", "for the fleet tests"), tmp_path / "auth")
    (tmp_path / "auth").mkdir()
    server.start()
    try:
        etcdctl = need("etcdctl", "to turn etcd authentication on")
        for argv in (["user", "add", "root:R00t-pw", "--interactive=false"], ["auth", "enable"]):
            done = await asyncio.create_subprocess_exec(
                etcdctl, "--endpoints", server.url, *argv, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"},
            )  # fmt: skip
            assert await done.wait() == 0
        good = server.url.replace("http://", "http://root:R00t-pw@")
        bad = server.url.replace("http://", "http://root:Wr0ng-pw@")
        async with (
            listener() as (up, _),
            Healthd(tmp_path, config(good, "auth", "ok", up), name="ok") as ok,
            Healthd(tmp_path, config(bad, "auth", "no", up), name="no") as no,
        ):

            async def connected() -> bool:
                return await metric(session, ok, "healthd_fleet_connected") == 1

            await eventually(connected, 10, "connected with the right password")
            assert list((await admin_fleet(session, ok))["instances"]) == ["ok"]
            await asyncio.sleep(1.0)
            assert await metric(session, no, "healthd_fleet_connected") == 0
            texts = [await (await session.get(h.admin_url("/admin/fleet"), headers=AUTH)).text()
                     for h in (ok, no)]  # fmt: skip
        for text in [*texts, *ok.lines, *no.lines]:
            assert "R00t-pw" not in text
            assert "Wr0ng-pw" not in text
        assert any("authentication failed" in line for line in no.lines)
    finally:
        server.stop()
