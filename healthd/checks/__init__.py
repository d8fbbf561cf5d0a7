"""The check kinds. `CheckSpec` below is the only list of them: one module, one line."""

from __future__ import annotations

from typing import Annotated, get_args

from pydantic import Field

from healthd.checks.amqp import AmqpSpec
from healthd.checks.base import Check, SpecBase
from healthd.checks.disk import DiskSpec
from healthd.checks.dns import DnsSpec
from healthd.checks.exec import ExecSpec
from healthd.checks.grpc import GrpcSpec
from healthd.checks.heartbeat import HeartbeatSpec
from healthd.checks.http import HttpSpec
from healthd.checks.loop import LoopSpec
from healthd.checks.mqtt import MqttSpec
from healthd.checks.mysql import MysqlSpec
from healthd.checks.nats import NatsSpec
from healthd.checks.postgres import PostgresSpec
from healthd.checks.redis import RedisSpec
from healthd.checks.remote import RemoteSpec
from healthd.checks.tcp import TcpSpec

CheckSpec = Annotated[
    TcpSpec
    | LoopSpec
    | HttpSpec
    | DnsSpec
    | ExecSpec
    | DiskSpec
    | RemoteSpec
    | AmqpSpec
    | MqttSpec
    | NatsSpec
    | GrpcSpec
    | PostgresSpec
    | MysqlSpec
    | RedisSpec
    | HeartbeatSpec,
    Field(discriminator="kind"),
]

SPECS: dict[str, type[SpecBase]] = {
    get_args(member.model_fields["kind"].annotation)[0]: member  # each kind's Literal["..."]
    for member in get_args(get_args(CheckSpec)[0])
}
"""Each kind's spec class by name, read from the union (the only list of kinds)."""
KINDS: tuple[str, ...] = tuple(SPECS)

__all__ = ["KINDS", "SPECS", "Check", "CheckSpec", "SpecBase"]
