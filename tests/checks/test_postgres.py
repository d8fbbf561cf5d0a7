"""The `postgres` kind against the local PostgreSQL (trust auth) and a private password one."""

from __future__ import annotations

import asyncio
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from pydantic import ValidationError

from healthd import runner
from healthd.checks.postgres import PostgresSpec
from healthd.deadline import Deadline
from healthd.model import CheckResult, Outcome, Reason
from tests.servers import postgres_server

pytestmark = pytest.mark.service("postgres")

DSN = "postgresql://postgres@127.0.0.1:5432/test"


def spec(dsn: str = DSN, **keys: str) -> PostgresSpec:
    return PostgresSpec(name="db", kind="postgres", dsn=dsn, **keys)


async def run(check_spec: PostgresSpec) -> CheckResult:
    return await runner.run(check_spec, check_spec.build(), Deadline.after(5.0))


@pytest.fixture
async def admin() -> AsyncIterator[asyncpg.Connection]:
    """A separate connection for looking at the server from the side."""
    conn = await asyncpg.connect(DSN)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def password_server(certificate: tuple[Path, Path]) -> Iterator[tuple[int, str]]:
    """A private PostgreSQL on a free port with scram-sha-256 auth and TLS offered:
    (port, postgres's password).

    The shared server trusts 127.0.0.1 (any password is accepted), so a wrong password
    can only be refused by a server of our own.
    """
    with postgres_server(tls=certificate) as server:
        yield server.port, server.password


async def test_select_1_passes() -> None:
    """A fresh connection running SELECT 1 is a pass that names the server version."""
    result = await run(spec())
    assert result.outcome is Outcome.PASS, result.message
    assert result.message.startswith("SELECT 1 ok (PostgreSQL ")


async def test_failing_query_is_unhealthy() -> None:
    """A query the server rejects is a failure carrying its SQLSTATE."""
    result = await run(spec(query="SELECT * FROM healthd_no_such_table"))
    assert (result.outcome, result.reason) == (Outcome.FAIL, Reason.UNHEALTHY)
    assert result.message.startswith("42P01: ")


def test_wrong_scheme_is_rejected_without_echoing_the_password() -> None:
    """A URL of another scheme fails validation, and the error does not quote the password."""
    with pytest.raises(ValidationError, match="postgresql://") as info:
        spec("mysql://app:S3cr3t-pw@db/app")
    assert "S3cr3t-pw" not in str(info.value)


async def test_unknown_role_is_auth_failed() -> None:
    """On the trust-auth server a role that does not exist is refused at login (SQLSTATE 28000)."""
    result = await run(
        spec(f"postgresql://healthd_no_role_{uuid.uuid4().hex[:8]}@127.0.0.1:5432/test")
    )
    assert (result.outcome, result.reason) == (Outcome.FAIL, Reason.AUTH_FAILED)


async def test_wrong_password_is_auth_failed(password_server: tuple[int, str]) -> None:
    """With password auth, the right password passes and a wrong one is `auth_failed`."""
    port, password = password_server
    good = await run(spec(f"postgresql://postgres:{password}@127.0.0.1:{port}/postgres"))
    bad = await run(spec(f"postgresql://postgres:wrong-{password}@127.0.0.1:{port}/postgres"))
    assert good.outcome is Outcome.PASS, good.message
    assert (bad.outcome, bad.reason) == (Outcome.FAIL, Reason.AUTH_FAILED)
    assert "password authentication failed" in bad.message


async def test_slow_statement_times_out_and_leaves_the_server(admin: asyncpg.Connection) -> None:
    """pg_sleep(5) under a 300ms timeout times out at 300ms, and the server drops it within 1s."""
    marker = f"healthd-test-{uuid.uuid4().hex}"
    result = await run(spec(query=f"SELECT pg_sleep(5) /* {marker} */", timeout="300ms"))
    ended = time.monotonic()
    assert (result.outcome, result.reason) == (Outcome.TIMEOUT, Reason.TIMEOUT)
    assert 0.28 <= result.duration <= 0.6
    sql = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE $1 AND pid <> pg_backend_pid()"
    while await admin.fetchval(sql, f"%{marker}%") and time.monotonic() - ended < 1.0:
        await asyncio.sleep(0.02)
    assert await admin.fetchval(sql, f"%{marker}%") == 0


async def test_cancelled_runs_leave_no_connections(admin: asyncpg.Connection) -> None:
    """After 500 runs cut by a tiny timeout, our application_name's connections return to 0."""
    name = f"healthd_test_{uuid.uuid4().hex[:12]}"
    check_spec = spec(f"{DSN}?application_name={name}", query="SELECT pg_sleep(1)", timeout="5ms")
    check = check_spec.build()
    outcomes = set()
    for _ in range(500):
        result = await runner.run(check_spec, check, Deadline.after(5.0))
        outcomes.add(result.outcome)
    assert outcomes == {Outcome.TIMEOUT}
    sql = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
    ended = time.monotonic()
    while await admin.fetchval(sql, name) and time.monotonic() - ended < 2.0:
        await asyncio.sleep(0.05)
    assert await admin.fetchval(sql, name) == 0


@pytest.mark.parametrize("target", ["refused", "hung", "wrong_role"])
async def test_password_never_appears(
    target: str, refused_port: int, hung_listener: tuple[str, int]
) -> None:
    """A DSN's password is in no message, exception, repr, str or JSON dump of the spec."""
    password = f"S3cr3t-{uuid.uuid4().hex}"
    address = {
        "refused": f"127.0.0.1:{refused_port}",
        "hung": f"{hung_listener[0]}:{hung_listener[1]}",
        "wrong_role": "127.0.0.1:5432",
    }[target]
    check_spec = spec(f"postgresql://healthd_nobody:{password}@{address}/test", timeout="300ms")
    result = await run(check_spec)
    assert result.outcome is not Outcome.PASS
    if target != "hung":
        assert "healthd_nobody:***@" in result.message
    raised = ""
    try:
        await asyncio.wait_for(check_spec.build()(Deadline.after(0.3)), 1.0)
    except Exception as exc:  # what the check raises, with its traceback
        raised = "".join(traceback.format_exception(exc))
    texts = [result.message, raised, repr(check_spec), str(check_spec)]
    texts.append(check_spec.model_dump_json())
    assert not [text for text in texts if password in text]


async def test_sslmode_is_honoured(
    password_server: tuple[int, str], certificate: tuple[Path, Path]
) -> None:
    """The DSN's sslmode holds: require runs over TLS, verify-full with its CA, disable in clear."""
    port, password = password_server
    base = f"postgresql://postgres:{password}@127.0.0.1:{port}/postgres"
    only_over_tls = "SELECT 1 / ssl::int FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    required = await run(spec(f"{base}?sslmode=require", query=only_over_tls))
    assert required.outcome is Outcome.PASS, required.message
    verified = await run(spec(f"{base}?sslmode=verify-full&sslrootcert={certificate[0]}"))
    assert verified.outcome is Outcome.PASS, verified.message
    plain = await run(spec(f"{base}?sslmode=disable", query=only_over_tls))
    assert plain.outcome is Outcome.FAIL  # division by zero: the query proves the channel
