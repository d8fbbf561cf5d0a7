"""`mqtt`: a pass means the broker accepted an MQTT 3.1.1 CONNECT (CONNACK code 0).

Raw packets, no dependency: CONNECT (clean session, a fresh client id per run so
two healthd instances never kick each other off), read CONNACK, then DISCONNECT.
"""

from __future__ import annotations

import asyncio
import secrets
import struct
from typing import Any, ClassVar, Literal

from healthd.checks._wire import BrokerSpec, Endpoint, connect, parse_url
from healthd.checks.base import Context
from healthd.deadline import Deadline
from healthd.errors import CheckFailed
from healthd.model import Observation, Reason

PORTS = {"mqtt": 1883, "mqtts": 8883}
TLS_SCHEMES = frozenset({"mqtts"})
KEEPALIVE = 5  # seconds; we disconnect at once, this only bounds a half-open session
_CONNACK = b"\x20\x02"
_DISCONNECT = b"\xe0\x00"

# CONNACK return codes (MQTT 3.1.1 §3.2.2.3) that are not 0 (accepted).
_REFUSALS: dict[int, tuple[Reason, str]] = {
    1: (Reason.PROTOCOL, "unacceptable protocol version"),
    2: (Reason.PROTOCOL, "client identifier rejected"),
    3: (Reason.UNHEALTHY, "server unavailable"),
    4: (Reason.AUTH_FAILED, "bad user name or password"),
    5: (Reason.AUTH_FAILED, "not authorised"),
}


def _endpoint(url: str) -> Endpoint:
    return parse_url(url, PORTS, TLS_SCHEMES)


def _string(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return struct.pack(">H", len(data)) + data


def _remaining_length(size: int) -> bytes:
    out = bytearray()
    while True:
        size, digit = divmod(size, 128)
        out.append(digit | (0x80 if size else 0))
        if not size:
            return bytes(out)


def connect_packet(client_id: str, username: str, password: str) -> bytes:
    """An MQTT 3.1.1 CONNECT with clean session, and credentials when given."""
    flags = 0x02
    payload = _string(client_id)
    if username:
        flags |= 0x80
        payload += _string(username)
        if password:
            flags |= 0x40
            payload += _string(password)
    variable = _string("MQTT") + struct.pack(">BBH", 4, flags, KEEPALIVE)
    body = variable + payload
    return b"\x10" + _remaining_length(len(body)) + body


class MqttSpec(BrokerSpec):
    kind: Literal["mqtt"] = "mqtt"
    example: ClassVar[dict[str, Any]] = {"url": "mqtt://127.0.0.1:1883"}

    @classmethod
    def endpoint_of(cls, url: str) -> Endpoint:
        return _endpoint(url)

    def build(self, context: Context | None = None) -> MqttCheck:
        return MqttCheck(self.endpoint)


class MqttCheck:
    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    def __repr__(self) -> str:
        return f"MqttCheck({self.endpoint.redacted!r})"

    async def __call__(self, deadline: Deadline) -> Observation:
        ep = self.endpoint
        loop = asyncio.get_running_loop()
        started = loop.time()
        packet = connect_packet(
            f"healthd-{secrets.token_hex(6)}", ep.username, ep.password.get_secret_value()
        )
        # The budget is also our operation timeout, so the check is bounded without the runner.
        async with (
            asyncio.timeout(deadline.remaining()),
            connect(ep.host, ep.port, tls=ep.tls) as (reader, writer),
        ):
            writer.write(packet)
            answer = await reader.readexactly(4)
            if answer[:2] != _CONNACK:
                raise CheckFailed(Reason.PROTOCOL, f"expected CONNACK, got {answer[:2].hex()}")
            code = answer[3]
            if code == 0:
                writer.write(_DISCONNECT)
        if code != 0:
            reason, text = _REFUSALS.get(code, (Reason.PROTOCOL, "unknown return code"))
            raise CheckFailed(reason, f"CONNACK refused ({code}): {text}")
        elapsed = (loop.time() - started) * 1000
        return Observation(message=f"CONNACK accepted by {ep.address} in {elapsed:.1f}ms")
