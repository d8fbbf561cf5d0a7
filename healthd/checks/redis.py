"""`redis`: a pass means a fresh connection answered `PING` with `PONG`.

redis-py retries a failed command with backoff by default (a refused port took ~3.8 s,
FIELD-NOTES); a probe must fail fast, so retries are off and the socket timeouts come
from the remaining budget. Every run builds its own client and closes it, on cancel
too. Driver: redis-py's asyncio client (extra `redis`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator

from healthd.checks.base import Context, SpecBase
from healthd.checks.urls import driver_network_failure, redact, scrub, secrets_of
from healthd.deadline import Deadline
from healthd.durations import human_duration
from healthd.errors import CheckError, CheckFailed, CheckTimeout
from healthd.model import Observation, Reason

SCHEMES = ("redis", "rediss")
CLIENT_NAME = "healthd"
AUTH_MARKERS = ("NOAUTH", "WRONGPASS", "invalid password", "AUTH", "invalid username")


class RedisSpec(SpecBase):
    requires: ClassVar[tuple[str, ...]] = ("redis",)
    imports: ClassVar[tuple[str, ...]] = ("redis.asyncio", "redis.asyncio.retry", "redis.backoff")
    extra: ClassVar[str] = "redis"

    kind: Literal["redis"] = "redis"
    example: ClassVar[dict[str, Any]] = {"url": "redis://127.0.0.1:6379/0"}
    url: SecretStr = Field(
        description="redis://[[user]:password@]host:port/db, or rediss:// for TLS"
    )

    @field_validator("url")
    @classmethod
    def _scheme(cls, url: SecretStr) -> SecretStr:
        try:
            parts = urlsplit(url.get_secret_value())
            _ = parts.port  # raises ValueError when not a number in range
        except ValueError:
            raise ValueError("must be a redis:// URL (bad host or port)") from None
        if parts.scheme not in SCHEMES:
            raise ValueError("must be a redis:// or rediss:// URL")
        return url

    def build(self, context: Context | None = None) -> RedisCheck:
        return RedisCheck(self.url)


class RedisCheck:
    def __init__(self, url: SecretStr) -> None:
        self.url = url
        raw = url.get_secret_value()
        self.target = redact(raw)
        self.secrets = secrets_of(raw)

    async def __call__(self, deadline: Deadline) -> Observation:
        # The `redis` extra; imported here so the base install works without it.
        from redis.asyncio import ConnectionPool, Redis
        from redis.asyncio.connection import parse_url
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        budget = max(deadline.remaining(), 0.001)
        try:
            options: dict[str, Any] = dict(parse_url(self.url.get_secret_value()))
        except ValueError:
            raise CheckFailed(Reason.UNEXPECTED, f"invalid redis URL: {self.target}") from None
        options.setdefault("client_name", CLIENT_NAME)  # the URL's ?client_name= wins
        # Ours win over the URL's query: the budget is the contract (reference §3).
        options.update(
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=budget,
            socket_timeout=budget,
            health_check_interval=0,
            max_connections=1,
        )
        client = Redis.from_pool(ConnectionPool(**options))
        try:
            pong = await client.ping()
        except Exception as exc:  # noqa: BLE001 - each driver error becomes a stable reason
            raise self._failure(exc, budget) from None
        finally:
            # ATTENTION: also on cancellation; aclose() disconnects every connection of the
            # pool, the one in use included, so a cancelled PING leaves nothing open.
            await client.aclose()
        if pong is not True:
            raise CheckFailed(Reason.PROTOCOL, f"PING answered {pong!r}, not PONG ({self.target})")
        return Observation(message="PONG")

    def _failure(self, exc: Exception, budget: float) -> CheckError:
        from redis import exceptions

        text = scrub(str(exc) or type(exc).__name__, self.secrets)
        if isinstance(exc, exceptions.AuthenticationError | exceptions.AuthorizationError) or (
            isinstance(exc, exceptions.ResponseError) and text.startswith(AUTH_MARKERS)
        ):
            return CheckFailed(Reason.AUTH_FAILED, f"auth failed: {text} ({self.target})")
        if isinstance(exc, exceptions.TimeoutError | TimeoutError):
            return CheckTimeout(f"timeout after {human_duration(budget)}: {self.target}")
        cause = exc.__cause__ or exc.__context__
        wrapped = (
            cause
            if isinstance(exc, exceptions.ConnectionError) and isinstance(cause, OSError)
            else None
        )
        failure = driver_network_failure(exc, wrapped, self.target, text, self.secrets)
        if failure is not None:
            return failure
        if isinstance(exc, exceptions.BusyLoadingError | exceptions.ResponseError):
            return CheckFailed(Reason.UNHEALTHY, f"{text} ({self.target})")
        if isinstance(exc, exceptions.RedisError):
            return CheckFailed(Reason.PROTOCOL, f"{text} ({self.target})")
        return CheckFailed(Reason.UNEXPECTED, f"{type(exc).__name__}: {text} ({self.target})")
