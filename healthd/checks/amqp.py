"""`amqp`: a pass means an AMQP 0-9-1 connection AND a channel were opened (RabbitMQ).

A raw handshake framed by pamqp, not aiormq: aiormq never times out its handshake,
and doing it ourselves gives the broker's exact reply codes (403 bad login, 530
vhost). The runner's deadline bounds the whole conversation; the socket is
aborted on timeout or cancellation.
"""

from __future__ import annotations

import asyncio
import struct
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from healthd.checks._wire import BrokerSpec, Endpoint, connect, parse_url
from healthd.checks.base import Context
from healthd.deadline import Deadline
from healthd.errors import CheckFailed
from healthd.model import Observation, Reason

if TYPE_CHECKING:
    from pamqp.base import Frame

_F = TypeVar("_F")
PORTS = {"amqp": 5672, "amqps": 5671}
TLS_SCHEMES = frozenset({"amqps"})
_HEADER = struct.Struct(">BHI")  # frame type, channel, payload size
_FRAME_METHOD = 1
_MAX_FRAME = 1 << 20  # handshake frames are tiny; refuse to buffer anything absurd

# Reply codes that mean "the broker works but will not serve us" rather than a wire problem.
_AUTH_CODES = {403: "ACCESS_REFUSED"}
_UNHEALTHY_CODES = {320: "CONNECTION_FORCED", 506: "RESOURCE_ERROR", 541: "INTERNAL_ERROR"}


def _endpoint(url: str) -> Endpoint:
    return parse_url(url, PORTS, TLS_SCHEMES)


def _vhost(path: str) -> str:
    """RabbitMQ URI rules: `/` or nothing is the default vhost `/`, `/%2F` is `/` too."""
    return path[1:] if len(path) > 1 else "/"


class AmqpSpec(BrokerSpec):
    requires: ClassVar[tuple[str, ...]] = ("pamqp",)
    imports: ClassVar[tuple[str, ...]] = ("pamqp.commands", "pamqp.frame", "pamqp.header")
    extra: ClassVar[str] = "amqp"

    kind: Literal["amqp"] = "amqp"
    example: ClassVar[dict[str, Any]] = {"url": "amqp://guest:guest@127.0.0.1:5672/"}

    @classmethod
    def endpoint_of(cls, url: str) -> Endpoint:
        return _endpoint(url)

    def build(self, context: Context | None = None) -> AmqpCheck:
        return AmqpCheck(self.endpoint)


class AmqpCheck:
    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.vhost = _vhost(endpoint.path)

    def __repr__(self) -> str:
        return f"AmqpCheck({self.endpoint.redacted!r})"

    async def __call__(self, deadline: Deadline) -> Observation:
        loop = asyncio.get_running_loop()
        started = loop.time()
        # The budget is also our operation timeout, so the check is bounded without the runner.
        async with asyncio.timeout(deadline.remaining()):
            ep = self.endpoint
            async with connect(ep.host, ep.port, tls=ep.tls) as (reader, writer):
                await _Conversation(reader, writer, self.vhost).run(
                    ep.username or "guest", ep.password.get_secret_value() or "guest"
                )
        elapsed = (loop.time() - started) * 1000
        return Observation(
            message=f"connection and channel opened on vhost {self.vhost!r} in {elapsed:.1f}ms"
        )


class _Conversation:
    """One AMQP 0-9-1 connection handshake, a channel, and a polite close."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, vhost: str):
        self.reader, self.writer, self.vhost = reader, writer, vhost

    async def run(self, username: str, password: str) -> None:
        from pamqp import commands, header

        self.writer.write(header.ProtocolHeader().marshal())
        start = await self._expect(commands.Connection.Start, "Connection.Start")
        raw: str | bytes = start.mechanisms
        mechanisms = (raw.decode(errors="replace") if isinstance(raw, bytes) else raw).split()
        if "PLAIN" not in mechanisms:
            raise CheckFailed(Reason.PROTOCOL, f"broker offers no PLAIN login ({mechanisms})")
        properties: dict[str, Any] = {
            "product": "healthd",
            "connection_name": "healthd",
            "capabilities": {"authentication_failure_close": True},
        }
        self._send(
            commands.Connection.StartOk(
                client_properties=properties, response=f"\0{username}\0{password}"
            )
        )
        tune = await self._expect(commands.Connection.Tune, "Connection.Tune")
        self._send(
            commands.Connection.TuneOk(
                channel_max=tune.channel_max, frame_max=tune.frame_max, heartbeat=0
            )
        )
        self._send(commands.Connection.Open(virtual_host=self.vhost))
        await self._expect(commands.Connection.OpenOk, "Connection.OpenOk")
        self._send(commands.Channel.Open(), channel=1)
        await self._expect(commands.Channel.OpenOk, "Channel.OpenOk")
        self._send(commands.Connection.Close(200, "healthd check done", 0, 0))
        await self._expect(commands.Connection.CloseOk, "Connection.CloseOk")

    def _send(self, frame: Frame, channel: int = 0) -> None:
        from pamqp import frame as framing

        self.writer.write(framing.marshal(frame, channel))

    async def _read(self) -> Frame:
        from pamqp import frame as framing

        head = await self.reader.readexactly(_HEADER.size)
        if head.startswith(b"AMQ"):  # the broker answers a protocol header with its own
            rest = await self.reader.readexactly(1)
            raise CheckFailed(Reason.PROTOCOL, f"broker wants protocol {(head + rest)[4:]!r}")
        kind, _, size = _HEADER.unpack(head)
        if size > _MAX_FRAME:
            raise CheckFailed(Reason.PROTOCOL, f"frame of {size} bytes during the handshake")
        data = head + await self.reader.readexactly(size + 1)
        if kind != _FRAME_METHOD:
            raise CheckFailed(Reason.PROTOCOL, f"unexpected frame type {kind} during the handshake")
        _, _, value = framing.unmarshal(data)
        return value  # type: ignore[return-value]  # a method frame unmarshals to a Frame

    async def _expect(self, expected: type[_F], name: str) -> _F:
        from pamqp import commands

        value = await self._read()
        if isinstance(value, expected):
            return value
        if isinstance(value, commands.Connection.Close | commands.Channel.Close):
            if isinstance(value, commands.Connection.Close):
                self._send(commands.Connection.CloseOk())
            raise self._refusal(value.reply_code or 0, value.reply_text)
        raise CheckFailed(Reason.PROTOCOL, f"expected {name}, got {value.name}")

    def _refusal(self, code: int, text: str) -> CheckFailed:
        text = text[:200]
        if code in _AUTH_CODES:
            return CheckFailed(Reason.AUTH_FAILED, f"login refused ({code}): {text}")
        if code == 530:  # NOT_ALLOWED on Connection.Open: the vhost is missing or not ours
            reason = Reason.AUTH_FAILED if "refused for user" in text else Reason.UNHEALTHY
            return CheckFailed(reason, f"vhost {self.vhost!r} not allowed ({code}): {text}")
        if code in _UNHEALTHY_CODES:
            return CheckFailed(Reason.UNHEALTHY, f"broker closed the connection ({code}): {text}")
        return CheckFailed(Reason.PROTOCOL, f"broker closed the connection ({code}): {text}")
