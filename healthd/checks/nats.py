"""`nats`: a pass means we connected and a PING got its PONG.

Raw client protocol, no dependency (nats-py cannot fail fast on a refused port):
read `INFO {json}`, upgrade to TLS when asked, send `CONNECT {json}` and `PING`,
expect `PONG` (or `-ERR '...'`). `nats://user:pass@h`, `nats://token@h`, `tls://h`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import ssl
from typing import Any, ClassVar, Literal

from healthd import __version__
from healthd.checks._wire import BrokerSpec, Endpoint, connect, parse_url
from healthd.checks.base import Context
from healthd.checks.urls import redact
from healthd.deadline import Deadline
from healthd.errors import CheckFailed
from healthd.model import Observation, Reason

PORTS = {"nats": 4222, "tls": 4222}
TLS_SCHEMES = frozenset({"tls"})


def _endpoint(url: str) -> Endpoint:
    endpoint = parse_url(url, PORTS, TLS_SCHEMES)
    # A lone user name is a token: hide it like a password.
    if endpoint.username and not endpoint.password.get_secret_value():
        redacted = redact(url, user_is_secret=True)
        return dataclasses.replace(endpoint, redacted=redacted)
    return endpoint


class NatsSpec(BrokerSpec):
    kind: Literal["nats"] = "nats"
    example: ClassVar[dict[str, Any]] = {"url": "nats://127.0.0.1:4222"}

    @classmethod
    def endpoint_of(cls, url: str) -> Endpoint:
        return _endpoint(url)

    def build(self, context: Context | None = None) -> NatsCheck:
        return NatsCheck(self.endpoint)


class NatsCheck:
    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    def __repr__(self) -> str:
        return f"NatsCheck({self.endpoint.redacted!r})"

    def _connect_line(self, info: dict[str, Any]) -> bytes:
        ep = self.endpoint
        options: dict[str, Any] = {
            "verbose": False,
            "pedantic": False,
            "name": "healthd",
            "lang": "python",
            "version": __version__,
            "protocol": 1,
            "tls_required": ep.tls or bool(info.get("tls_required")),
        }
        secret = ep.password.get_secret_value()
        if ep.username and secret:
            options.update(user=ep.username, **{"pass": secret})
        elif ep.username:
            options["auth_token"] = ep.username
        return b"CONNECT " + json.dumps(options).encode() + b"\r\nPING\r\n"

    async def __call__(self, deadline: Deadline) -> Observation:
        ep = self.endpoint
        loop = asyncio.get_running_loop()
        started = loop.time()
        # The budget is also our operation timeout, so the check is bounded without the runner.
        async with (
            asyncio.timeout(deadline.remaining()),
            connect(ep.host, ep.port) as (reader, writer),
        ):
            info = _info(await _line(reader))
            if info.get("tls_required") or ep.tls:
                if not (info.get("tls_required") or info.get("tls_available")):
                    raise CheckFailed(Reason.TLS, f"tls: {ep.address} does not offer TLS")
                await writer.start_tls(ssl.create_default_context(), server_hostname=ep.host)
            writer.write(self._connect_line(info))
            while True:
                line = await _line(reader)
                if line == "PONG":
                    break
                if line == "PING":  # the server may probe us first; answering keeps us polite
                    writer.write(b"PONG\r\n")
                elif line.startswith("-ERR"):
                    raise _refusal(line[4:].strip().strip("'"))
                elif not (line.startswith("INFO ") or line == "+OK"):
                    raise CheckFailed(Reason.PROTOCOL, f"expected PONG, got {line[:80]!r}")
        elapsed = (loop.time() - started) * 1000
        server = str(info.get("server_name") or info.get("server_id") or ep.address)[:64]
        return Observation(message=f"PONG from {server} in {elapsed:.1f}ms")


async def _line(reader: asyncio.StreamReader) -> str:
    try:
        data = await reader.readuntil(b"\r\n")  # the stream's limit (64 KiB) bounds a line
    except asyncio.LimitOverrunError:
        raise CheckFailed(Reason.PROTOCOL, "a line over 64 KiB from the server") from None
    return data[:-2].decode(errors="replace")


def _info(line: str) -> dict[str, Any]:
    if not line.startswith("INFO "):
        raise CheckFailed(Reason.PROTOCOL, f"expected INFO, got {line[:80]!r}")
    try:
        info = json.loads(line[5:])
    except ValueError:
        raise CheckFailed(Reason.PROTOCOL, "INFO is not JSON") from None
    if not isinstance(info, dict):
        raise CheckFailed(Reason.PROTOCOL, "INFO is not a JSON object")
    return info


def _refusal(error: str) -> CheckFailed:
    lowered = error.lower()
    if "authorization" in lowered or "authentication" in lowered:
        return CheckFailed(Reason.AUTH_FAILED, f"server refused us: {error[:200]}")
    if "maximum connections" in lowered:
        return CheckFailed(Reason.UNHEALTHY, f"server refused us: {error[:200]}")
    if "tls" in lowered or "secure connection" in lowered:
        return CheckFailed(Reason.TLS, f"tls: server refused us: {error[:200]}")
    return CheckFailed(Reason.PROTOCOL, f"server error: {error[:200]}")
