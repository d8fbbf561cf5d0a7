"""Shared pieces of the raw-protocol kinds (amqp, mqtt, nats): URLs and one connection.

`connect()` opens a TCP (optionally TLS) connection and always closes it: politely
after a finished conversation, by abort on any error or cancellation, so nothing
is left behind when the runner cancels us at the deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from pydantic import SecretStr, field_validator

from healthd.checks.base import SpecBase
from healthd.checks.urls import redact


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A parsed broker URL. `password` is the only secret; `__repr__` hides it."""

    scheme: str
    host: str
    port: int
    username: str
    password: SecretStr
    path: str
    tls: bool
    redacted: str

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_url(url: str, ports: dict[str, int], tls_schemes: frozenset[str]) -> Endpoint:
    """Split a broker URL; `ports` maps each accepted scheme to its default port.

    Raises ValueError with a message that never contains the password.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ports:
        raise ValueError(f"url: scheme must be one of {', '.join(sorted(ports))}")
    if not parts.hostname:
        raise ValueError("url: a host is required")
    try:
        port = parts.port or ports[scheme]
    except ValueError:
        raise ValueError("url: the port must be a number from 1 to 65535") from None
    return Endpoint(
        scheme=scheme,
        host=parts.hostname,
        port=port,
        username=unquote(parts.username or ""),
        password=SecretStr(unquote(parts.password or "")),
        path=unquote(parts.path),
        tls=scheme in tls_schemes,
        redacted=redact(url),
    )


@contextlib.asynccontextmanager
async def connect(
    host: str, port: int, *, tls: bool = False
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """An open connection that is closed on the way out, whatever happens inside."""
    context = ssl.create_default_context() if tls else None
    reader, writer = await asyncio.open_connection(
        host, port, ssl=context, server_hostname=host if tls else None
    )
    try:
        yield reader, writer
    except BaseException:
        # ATTENTION: also on CancelledError. abort() never waits, so cancellation stays prompt.
        writer.transport.abort()
        raise
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


class BrokerSpec(SpecBase):
    """A kind whose own key is one broker URL holding a password (amqp, mqtt, nats).

    Subclasses say how their URL parses (`endpoint_of`); the URL is checked at load
    time without echoing it, and `endpoint` gives the parsed form to build the check.
    """

    url: SecretStr

    @classmethod
    def endpoint_of(cls, url: str) -> Endpoint:
        raise NotImplementedError

    @field_validator("url")
    @classmethod
    def _url(cls, url: SecretStr) -> SecretStr:
        cls.endpoint_of(url.get_secret_value())
        return url

    @property
    def endpoint(self) -> Endpoint:
        return self.endpoint_of(self.url.get_secret_value())
