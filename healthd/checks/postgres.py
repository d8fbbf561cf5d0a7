"""`postgres`: a pass means a fresh connection ran `query` (default `SELECT 1`).

Each run opens its own connection (so DNS, TCP, TLS and auth are proven every time)
and runs the statement under a server-side `statement_timeout` taken from the
remaining budget: when the runner gives up, the server gives up too, and nothing
of the run is left in `pg_stat_activity`. Driver: asyncpg (extra `postgres`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import Field, SecretStr, field_validator

from healthd.checks.base import Context, SpecBase
from healthd.checks.urls import network_failure, redact, scrub, secrets_of, short
from healthd.deadline import Deadline
from healthd.durations import human_duration
from healthd.errors import CheckError, CheckFailed, CheckTimeout
from healthd.model import Observation, Reason

if TYPE_CHECKING:
    from types import ModuleType

APPLICATION_NAME = "healthd"
SCHEMES = ("postgresql", "postgres")


class PostgresSpec(SpecBase):
    requires: ClassVar[tuple[str, ...]] = ("asyncpg",)
    imports: ClassVar[tuple[str, ...]] = ("asyncpg",)
    extra: ClassVar[str] = "postgres"

    kind: Literal["postgres"] = "postgres"
    example: ClassVar[dict[str, Any]] = {"dsn": "postgresql://postgres@127.0.0.1:5432/test"}
    dsn: SecretStr = Field(description="postgresql://user:password@host:port/db?sslmode=...")
    query: str = Field(default="SELECT 1", min_length=1)

    @field_validator("dsn")
    @classmethod
    def _scheme(cls, dsn: SecretStr) -> SecretStr:
        scheme = dsn.get_secret_value().partition("://")[0]
        if scheme not in SCHEMES:
            raise ValueError("must be a postgresql://user:password@host:port/db URL")
        return dsn

    def build(self, context: Context | None = None) -> PostgresCheck:
        return PostgresCheck(self.dsn, self.query)


class PostgresCheck:
    def __init__(self, dsn: SecretStr, query: str) -> None:
        self.dsn, self.query = dsn, query
        raw = dsn.get_secret_value()
        self.target = redact(raw)
        self.secrets = secrets_of(raw)
        # The DSN's own ?application_name= wins; otherwise the server sees "healthd".
        self.settings = (
            {} if "application_name" in _query(raw) else {"application_name": APPLICATION_NAME}
        )

    async def __call__(self, deadline: Deadline) -> Observation:
        import asyncpg  # the `postgres` extra; imported here so the base install works without it

        budget = deadline.remaining()
        # Rounded up, so the server never cancels before the runner does (0 would mean "no limit").
        timeout_ms = max(1, math.ceil(budget * 1000))
        conn: Any = None
        try:
            conn = await asyncpg.connect(
                self.dsn.get_secret_value(),
                timeout=max(budget, 0.001),
                server_settings={**self.settings, "statement_timeout": str(timeout_ms)},
            )
            await conn.execute(self.query)  # simple protocol: no prepared statement, pgbouncer-safe
            version = str(conn.get_settings().server_version).split(" ")[0]
            await conn.close(timeout=max(deadline.remaining(), 0.001))
        except TimeoutError:
            raise CheckTimeout(f"timeout after {human_duration(budget)}: {self.target}") from None
        except Exception as exc:  # noqa: BLE001 - each driver error becomes a stable reason
            raise self._failure(exc, asyncpg) from None
        finally:
            # ATTENTION: on cancellation (the runner's deadline) or any error, terminate():
            # close() would wait on the server, and asyncpg's connect/TLS cancel paths are fragile.
            if conn is not None and not conn.is_closed():
                conn.terminate()
        return Observation(message=f"{short(self.query)} ok (PostgreSQL {version})")

    def _failure(self, exc: Exception, asyncpg: ModuleType) -> CheckError:
        text = scrub(str(exc) or type(exc).__name__, self.secrets)
        if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):  # SQLSTATE class 28
            return CheckFailed(Reason.AUTH_FAILED, f"auth failed: {text} ({self.target})")
        if isinstance(exc, asyncpg.QueryCanceledError) and "statement timeout" in text:
            return CheckTimeout(f"statement_timeout: {text} ({self.target})")
        if isinstance(exc, asyncpg.PostgresError):
            return CheckFailed(Reason.UNHEALTHY, f"{exc.sqlstate}: {text} ({self.target})")
        if "rejected SSL upgrade" in text:
            return CheckFailed(Reason.TLS, f"tls: {text} ({self.target})")
        failure = network_failure(exc, self.target, text)
        if failure is not None:
            return failure
        if isinstance(exc, asyncpg.InterfaceError | asyncpg.InternalClientError):
            return CheckFailed(Reason.PROTOCOL, f"{type(exc).__name__}: {text} ({self.target})")
        return CheckFailed(Reason.UNEXPECTED, f"{type(exc).__name__}: {text} ({self.target})")


def _query(dsn: str) -> dict[str, list[str]]:
    try:
        return parse_qs(urlsplit(dsn).query)
    except ValueError:
        return {}
