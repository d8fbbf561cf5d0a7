"""The `mysql` kind against the local MariaDB (root, empty password, database `test`)."""

from __future__ import annotations

import asyncio
import time
import traceback
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiomysql
import pytest
from pydantic import ValidationError

from healthd import runner
from healthd.checks.mysql import MysqlSpec
from healthd.deadline import Deadline
from healthd.model import CheckResult, Outcome, Reason

pytestmark = pytest.mark.service("mysql")

DSN = "mysql://root@127.0.0.1:3306/test"


def spec(dsn: str = DSN, **keys: str) -> MysqlSpec:
    return MysqlSpec(name="db", kind="mysql", dsn=dsn, **keys)


async def run(check_spec: MysqlSpec) -> CheckResult:
    return await runner.run(check_spec, check_spec.build(), Deadline.after(5.0))


@pytest.fixture
async def admin() -> AsyncIterator[Any]:
    """A separate root connection for looking at the server from the side."""
    conn = await aiomysql.connect(host="127.0.0.1", port=3306, user="root", db="test")
    try:
        yield conn
    finally:
        conn.close()


async def scalar(conn: Any, sql: str, *args: object) -> Any:
    async with conn.cursor() as cur:
        await cur.execute(sql, args)
        row = await cur.fetchone()
    return row[0]


@pytest.fixture
async def user(admin: Any) -> AsyncIterator[tuple[str, str]]:
    """A throwaway user `healthd_test_<random>` with a password and SELECT on `test`."""
    name, password = f"healthd_test_{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    async with admin.cursor() as cur:
        await cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (name, password))
        await cur.execute("GRANT SELECT ON test.* TO %s@'%%'", (name,))
    try:
        yield name, password
    finally:
        async with admin.cursor() as cur:
            await cur.execute("DROP USER IF EXISTS %s@'%%'", (name,))


async def test_select_1_passes() -> None:
    """A fresh connection running SELECT 1 is a pass that names the server."""
    result = await run(spec())
    assert result.outcome is Outcome.PASS, result.message
    assert result.message.startswith("SELECT 1 ok (MariaDB ")


async def test_failing_query_is_unhealthy() -> None:
    """A query the server rejects is a failure carrying its error code."""
    result = await run(spec(query="SELECT * FROM healthd_no_such_table"))
    assert (result.outcome, result.reason) == (Outcome.FAIL, Reason.UNHEALTHY)
    assert result.message.startswith("1146: ")


def test_wrong_scheme_is_rejected_without_echoing_the_password() -> None:
    """A URL of another scheme fails validation, and the error does not quote the password."""
    with pytest.raises(ValidationError, match="mysql://") as info:
        spec("postgresql://app:S3cr3t-pw@db/app")
    assert "S3cr3t-pw" not in str(info.value)


async def test_password_user_passes_and_wrong_password_is_auth_failed(
    user: tuple[str, str],
) -> None:
    """The right password passes; a wrong one is `auth_failed` (error 1045)."""
    name, password = user
    good = await run(spec(f"mysql://{name}:{password}@127.0.0.1:3306/test"))
    bad = await run(spec(f"mysql://{name}:wrong-{password}@127.0.0.1:3306/test"))
    assert good.outcome is Outcome.PASS, good.message
    assert (bad.outcome, bad.reason) == (Outcome.FAIL, Reason.AUTH_FAILED)
    assert "1045" in bad.message


async def test_slow_statement_times_out_and_leaves_the_server(admin: Any) -> None:
    """SLEEP(5) under a 300ms timeout times out at 300ms; the server drops it within 1.5s."""
    marker = f"healthd-test-{uuid.uuid4().hex}"
    result = await run(spec(query=f"SELECT SLEEP(5), '{marker}'", timeout="300ms"))
    ended = time.monotonic()
    assert (result.outcome, result.reason) == (Outcome.TIMEOUT, Reason.TIMEOUT)
    assert 0.28 <= result.duration <= 0.6
    sql = (
        "SELECT COUNT(*) FROM information_schema.processlist"
        " WHERE info LIKE %s AND id <> CONNECTION_ID()"
    )
    while await scalar(admin, sql, f"%{marker}%") and time.monotonic() - ended < 1.5:
        await asyncio.sleep(0.02)
    assert await scalar(admin, sql, f"%{marker}%") == 0


async def test_cancelled_runs_leave_no_connections(admin: Any, user: tuple[str, str]) -> None:
    """After 500 runs cut by a tiny timeout, the user's sessions on the server return to 0."""
    name, password = user
    check_spec = spec(
        f"mysql://{name}:{password}@127.0.0.1:3306/test", query="SELECT SLEEP(1)", timeout="5ms"
    )
    check = check_spec.build()
    outcomes = set()
    for _ in range(500):
        outcomes.add((await runner.run(check_spec, check, Deadline.after(5.0))).outcome)
    assert outcomes == {Outcome.TIMEOUT}
    sql = "SELECT COUNT(*) FROM information_schema.processlist WHERE user = %s"
    ended = time.monotonic()
    while await scalar(admin, sql, name) and time.monotonic() - ended < 2.0:
        await asyncio.sleep(0.05)
    assert await scalar(admin, sql, name) == 0


@pytest.mark.parametrize("target", ["refused", "hung", "wrong_user"])
async def test_password_never_appears(
    target: str, refused_port: int, hung_listener: tuple[str, int]
) -> None:
    """A DSN's password is in no message, exception, repr, str or JSON dump of the spec."""
    password = f"S3cr3t-{uuid.uuid4().hex}"
    address = {
        "refused": f"127.0.0.1:{refused_port}",
        "hung": f"{hung_listener[0]}:{hung_listener[1]}",
        "wrong_user": "127.0.0.1:3306",
    }[target]
    check_spec = spec(f"mysql://healthd_nobody:{password}@{address}/test", timeout="300ms")
    result = await run(check_spec)
    assert result.outcome is not Outcome.PASS
    if target != "hung":
        assert "healthd_nobody:***@" in result.message
    raised = ""
    try:
        await asyncio.wait_for(check_spec.build()(Deadline.after(0.3)), 0.3)
    except Exception as exc:  # what the check raises (or the timeout), with its traceback
        raised = "".join(traceback.format_exception(exc))
    texts = [result.message, raised, repr(check_spec), str(check_spec)]
    texts.append(check_spec.model_dump_json())
    assert not [text for text in texts if password in text]
