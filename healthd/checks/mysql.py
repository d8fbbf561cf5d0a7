"""`mysql`: a pass means a fresh connection ran `query` (default `SELECT 1`); MariaDB too.

aiomysql cannot cancel a running query: after a cancelled read the connection is dead
and the server keeps going (FIELD-NOTES). So each run uses its own connection, closes
it hard on any failure, and bounds the statement on the server from the remaining
budget: `max_execution_time` (MySQL, ms) or `max_statement_time` (MariaDB, seconds).
Driver: aiomysql (extra `mysql`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_validator

from healthd.checks.base import Context, SpecBase
from healthd.checks.urls import driver_network_failure, redact, scrub, secrets_of, short
from healthd.deadline import Deadline
from healthd.durations import human_duration
from healthd.errors import CheckError, CheckFailed, CheckTimeout
from healthd.model import Observation, Reason

if TYPE_CHECKING:
    from types import ModuleType

SCHEMES = ("mysql", "mariadb")
PROGRAM_NAME = "healthd"
AUTH_ERRORS = frozenset({1044, 1045, 1698})  # access denied: to a database, for a user, socket auth
TIMEOUT_ERRORS = frozenset({1969, 3024})  # MariaDB max_statement_time, MySQL max_execution_time
LOST_ERRORS = frozenset({2006, 2013})  # server gone away, lost connection during query


def _parse(dsn: str) -> dict[str, Any]:
    """`mysql://user:password@host:port/db` → aiomysql connect keywords. ValueError if malformed."""
    try:
        parts = urlsplit(dsn)
        port = parts.port
    except ValueError:
        raise ValueError(
            "must be a mysql://user:password@host:port/db URL (bad host or port)"
        ) from None
    if parts.scheme not in SCHEMES:
        raise ValueError("must be a mysql://user:password@host:port/db URL")
    if parts.query or parts.fragment:
        raise ValueError("query parameters are not supported in a mysql DSN")
    return {
        "host": parts.hostname or "localhost",
        "port": port or 3306,
        "user": unquote(parts.username or "") or None,
        "password": unquote(parts.password or ""),
        "db": unquote(parts.path.lstrip("/")) or None,
    }


class MysqlSpec(SpecBase):
    requires: ClassVar[tuple[str, ...]] = ("aiomysql",)
    imports: ClassVar[tuple[str, ...]] = ("aiomysql",)
    extra: ClassVar[str] = "mysql"

    kind: Literal["mysql"] = "mysql"
    example: ClassVar[dict[str, Any]] = {"dsn": "mysql://root@127.0.0.1:3306/test"}
    dsn: SecretStr = Field(description="mysql://user:password@host:port/db")
    query: str = Field(default="SELECT 1", min_length=1)

    @field_validator("dsn")
    @classmethod
    def _valid(cls, dsn: SecretStr) -> SecretStr:
        _parse(dsn.get_secret_value())  # its messages never quote the DSN
        return dsn

    def build(self, context: Context | None = None) -> MysqlCheck:
        return MysqlCheck(self.dsn, self.query)


class MysqlCheck:
    def __init__(self, dsn: SecretStr, query: str) -> None:
        self.dsn, self.query = dsn, query
        raw = dsn.get_secret_value()
        self.target = redact(raw)
        self.secrets = secrets_of(raw)

    async def __call__(self, deadline: Deadline) -> Observation:
        import aiomysql  # the `mysql` extra; imported here so the base install works without it

        budget = deadline.remaining()
        conn: Any = aiomysql.Connection(
            **_parse(self.dsn.get_secret_value()),
            connect_timeout=max(budget, 0.001),
            autocommit=True,
            program_name=PROGRAM_NAME,
        )
        try:
            # ATTENTION: Connection._connect() rather than aiomysql.connect(): the latter
            # closes its socket on Exception but not on CancelledError, and gives us no
            # handle to close it ourselves. Holding `conn` lets `finally` close it on cancel.
            await conn._connect()
            version = conn.get_server_info()
            await conn.query(_limit_statement(version, deadline.remaining()))
            await conn.query(self.query)
            await conn.ensure_closed()  # a polite COM_QUIT on the good path
        except Exception as exc:  # noqa: BLE001 - each driver error becomes a stable reason
            raise self._failure(exc, budget, aiomysql) from None
        finally:
            conn.close()  # hard: drops the socket; a no-op after ensure_closed()
        server = "MariaDB" if "MariaDB" in version else "MySQL"
        return Observation(message=f"{short(self.query)} ok ({server} {_version(version)})")

    def _failure(self, exc: Exception, budget: float, aiomysql: ModuleType) -> CheckError:
        text = scrub(str(exc) or type(exc).__name__, self.secrets)
        code = exc.args[0] if isinstance(exc, aiomysql.MySQLError) and exc.args else None
        if isinstance(code, int) and len(exc.args) > 1:
            text = scrub(f"{code}: {exc.args[1]}", self.secrets)
        if code in AUTH_ERRORS:
            return CheckFailed(Reason.AUTH_FAILED, f"auth failed: {text} ({self.target})")
        if code in TIMEOUT_ERRORS:
            return CheckTimeout(f"server statement limit: {text} ({self.target})")
        cause = exc.__cause__
        if isinstance(cause, TimeoutError) or isinstance(exc, TimeoutError):
            return CheckTimeout(f"timeout after {human_duration(budget)}: {self.target}")
        failure = driver_network_failure(exc, cause, self.target, text, self.secrets)
        if failure is not None:
            return failure
        if code in LOST_ERRORS or isinstance(exc, aiomysql.InterfaceError):
            return CheckFailed(Reason.PROTOCOL, f"{text} ({self.target})")
        if isinstance(exc, aiomysql.MySQLError):
            return CheckFailed(Reason.UNHEALTHY, f"{text} ({self.target})")
        return CheckFailed(Reason.UNEXPECTED, f"{type(exc).__name__}: {text} ({self.target})")


def _limit_statement(version: str, remaining: float) -> str:
    """The SET that makes the server stop our statement when the budget runs out.

    Rounded up so the server never stops it before the runner gives up (0 means no limit).
    """
    if "MariaDB" in version:
        return f"SET SESSION max_statement_time = {max(0.001, math.ceil(remaining * 1000) / 1000)}"
    return f"SET SESSION max_execution_time = {max(1, math.ceil(remaining * 1000))}"


def _version(server_info: str) -> str:
    """`5.5.5-10.11.19-MariaDB-0+deb12u1` → `10.11.19`; `8.0.36` → `8.0.36`."""
    info = server_info.removeprefix("5.5.5-")  # MariaDB's replication-compatibility prefix
    return info.split("-")[0]
