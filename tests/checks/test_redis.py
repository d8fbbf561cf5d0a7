"""The `redis` kind against the local Redis, and private `redis-server`s started on free ports.

Faults that stall or kill a server (CLIENT PAUSE, SIGSTOP, SIGKILL) use a private server,
so other tests sharing the local Redis never wait on ours.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from redis.asyncio import Redis

from healthd import runner
from healthd.checks.redis import RedisSpec
from healthd.deadline import Deadline
from healthd.model import CheckResult, Outcome, Reason
from tests.servers import Redis as PrivateRedis
from tests.servers import redis_server

pytestmark = pytest.mark.service("redis")


def spec(url: str = "redis://127.0.0.1:6379/0", **keys: str) -> RedisSpec:
    return RedisSpec(name="cache", kind="redis", url=url, **keys)


async def run(check_spec: RedisSpec) -> CheckResult:
    return await runner.run(check_spec, check_spec.build(), Deadline.after(5.0))


@pytest.fixture(scope="module")
def private() -> Iterator[PrivateRedis]:
    with redis_server() as server:
        yield server


@pytest.fixture
async def admin(private: PrivateRedis) -> AsyncIterator[Redis]:
    """A separate connection to the private server, for pausing and counting."""
    client = Redis(host="127.0.0.1", port=private.port, password=private.password)
    try:
        yield client
    finally:
        await client.aclose()


async def test_ping_passes() -> None:
    """A fresh client's PING answered with PONG is a pass."""
    result = await run(spec())
    assert (result.outcome, result.message) == (Outcome.PASS, "PONG")


async def test_password_and_db_from_the_url_pass(private: PrivateRedis) -> None:
    """The URL's password and database number are used."""
    result = await run(spec(f"{private.url()[:-2]}/3"))
    assert result.outcome is Outcome.PASS, result.message


def test_wrong_scheme_is_rejected_without_echoing_the_password() -> None:
    """A URL of another scheme fails validation, and the error does not quote the password."""
    with pytest.raises(ValidationError, match="redis://") as info:
        spec("http://app:S3cr3t-pw@cache:6379/0")
    assert "S3cr3t-pw" not in str(info.value)


async def test_wrong_password_is_auth_failed(private: PrivateRedis) -> None:
    """A wrong password (WRONGPASS) is `auth_failed`."""
    result = await run(spec(private.url(password="wrong")))
    assert (result.outcome, result.reason) == (Outcome.FAIL, Reason.AUTH_FAILED)


async def test_missing_password_is_auth_failed(private: PrivateRedis) -> None:
    """No password for a server that wants one (NOAUTH) is `auth_failed`."""
    result = await run(spec(f"redis://127.0.0.1:{private.port}/0"))
    assert (result.outcome, result.reason) == (Outcome.FAIL, Reason.AUTH_FAILED)


async def test_paused_server_times_out_at_the_budget(private: PrivateRedis, admin: Redis) -> None:
    """With every client paused (CLIENT PAUSE 2000 ALL) a 300ms check times out at 300ms."""
    await admin.client_pause(2000, all=True)
    try:
        result = await run(spec(private.url(), timeout="300ms"))
    finally:
        # Redis 7.0 holds even CLIENT UNPAUSE until the pause ends; later ones lift it at once.
        await admin.client_unpause()
    assert (result.outcome, result.reason) == (Outcome.TIMEOUT, Reason.TIMEOUT)
    assert 0.28 <= result.duration <= 0.6


async def test_server_killed_mid_run_fails_fast() -> None:
    """A server that dies while the check waits on it is a failure at once, not a timeout."""
    with redis_server() as server:
        client = Redis(host="127.0.0.1", port=server.port, password=server.password)
        await client.client_pause(5000, all=True)
        await client.aclose()
        check_spec = spec(server.url(), timeout="2s")
        running = asyncio.create_task(run(check_spec))
        await asyncio.sleep(0.2)
        server.stop()
        result = await running
    assert (result.outcome, result.reason) == (Outcome.FAIL, Reason.PROTOCOL)
    assert result.duration < 1.0


async def test_cancelled_runs_leave_no_connections(private: PrivateRedis, admin: Redis) -> None:
    """After 500 runs cut by a tiny timeout (server stopped), its clients return to baseline."""
    baseline = (await admin.info("clients"))["connected_clients"]
    check_spec = spec(private.url(), timeout="5ms")
    check = check_spec.build()
    outcomes = set()
    # SIGSTOP: the kernel still completes each TCP handshake, the server never answers.
    os.kill(private.pid, signal.SIGSTOP)
    try:
        for _ in range(500):
            outcomes.add((await runner.run(check_spec, check, Deadline.after(5.0))).outcome)
    finally:
        os.kill(private.pid, signal.SIGCONT)
    assert outcomes == {Outcome.TIMEOUT}
    ended = time.monotonic()
    while (await admin.info("clients"))["connected_clients"] > baseline:
        if time.monotonic() - ended > 2.0:
            break
        await asyncio.sleep(0.05)
    assert (await admin.info("clients"))["connected_clients"] == baseline


@pytest.mark.parametrize("target", ["refused", "hung", "wrong_password"])
async def test_password_never_appears(
    target: str, refused_port: int, hung_listener: tuple[str, int], private: PrivateRedis
) -> None:
    """A URL's password is in no message, exception, repr, str or JSON dump of the spec."""
    password = f"S3cr3t-{uuid.uuid4().hex}"
    address = {
        "refused": f"127.0.0.1:{refused_port}",
        "hung": f"{hung_listener[0]}:{hung_listener[1]}",
        "wrong_password": f"127.0.0.1:{private.port}",
    }[target]
    check_spec = spec(f"redis://healthd:{password}@{address}/0", timeout="300ms")
    result = await run(check_spec)
    assert result.outcome is not Outcome.PASS
    if target != "hung":
        assert "healthd:***@" in result.message
    raised = ""
    try:
        await asyncio.wait_for(check_spec.build()(Deadline.after(0.3)), 1.0)
    except Exception as exc:  # what the check raises, with its traceback
        raised = "".join(traceback.format_exception(exc))
    texts = [result.message, raised, repr(check_spec), str(check_spec)]
    texts.append(check_spec.model_dump_json())
    assert not [text for text in texts if password in text]


async def test_rediss_verifies_the_server_certificate(certificate: tuple[Path, Path]) -> None:
    """rediss:// passes when the server's certificate is trusted, and is `tls` when it is not."""
    cert, _ = certificate
    with redis_server(tls=certificate) as server:
        base = f"rediss://:{server.password}@127.0.0.1:{server.port}/0"
        trusted = await run(spec(f"{base}?ssl_ca_certs={cert}"))
        untrusted = await run(spec(base))
    assert (trusted.outcome, trusted.message) == (Outcome.PASS, "PONG")
    assert (untrusted.outcome, untrusted.reason) == (Outcome.FAIL, Reason.TLS)
    assert server.password not in untrusted.message
