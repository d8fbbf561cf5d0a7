"""The check kinds. `CheckSpec` below is the only list of them: one module, one line.

Each kind's spec is also its public constructor in code: `checks.Tcp(name="db",
address="db:5432")` is what `{name: db, kind: tcp, address: "db:5432"}` is in a file.
`checks.Func(name, fn)` is the in-process check (func.py), which no file can hold.
"""

from __future__ import annotations

from typing import Annotated, get_args

from pydantic import Field

from healthd.checks.amqp import AmqpSpec as Amqp
from healthd.checks.base import Check, SpecBase
from healthd.checks.disk import DiskSpec as Disk
from healthd.checks.dns import DnsSpec as Dns
from healthd.checks.exec import ExecSpec as Exec
from healthd.checks.func import Func, FuncSpec, Warn
from healthd.checks.grpc import GrpcSpec as Grpc
from healthd.checks.heartbeat import HeartbeatSpec as Heartbeat
from healthd.checks.http import HttpSpec as Http
from healthd.checks.loop import LoopSpec as Loop
from healthd.checks.mqtt import MqttSpec as Mqtt
from healthd.checks.mysql import MysqlSpec as Mysql
from healthd.checks.nats import NatsSpec as Nats
from healthd.checks.postgres import PostgresSpec as Postgres
from healthd.checks.process import ProcessSpec as Process
from healthd.checks.redis import RedisSpec as Redis
from healthd.checks.remote import RemoteSpec as Remote
from healthd.checks.tcp import TcpSpec as Tcp

CheckSpec = Annotated[
    Tcp
    | Loop
    | Http
    | Dns
    | Exec
    | Disk
    | Remote
    | Amqp
    | Mqtt
    | Nats
    | Grpc
    | Postgres
    | Mysql
    | Redis
    | Heartbeat
    | Process,
    Field(discriminator="kind"),
]

SPECS: dict[str, type[SpecBase]] = {
    get_args(member.model_fields["kind"].annotation)[0]: member  # each kind's Literal["..."]
    for member in get_args(get_args(CheckSpec)[0])
}
"""Each kind's spec class by name, read from the union (the only list of kinds)."""
KINDS: tuple[str, ...] = tuple(SPECS)

__all__ = [
    "KINDS",
    "SPECS",
    "Amqp",
    "Check",
    "CheckSpec",
    "Disk",
    "Dns",
    "Exec",
    "Func",
    "FuncSpec",
    "Grpc",
    "Heartbeat",
    "Http",
    "Loop",
    "Mqtt",
    "Mysql",
    "Nats",
    "Postgres",
    "Process",
    "Redis",
    "Remote",
    "SpecBase",
    "Tcp",
    "Warn",
]
