"""The same two faults for every kind that talks to a server, from one table.

- a refused port is `refused`, answered at once rather than at the deadline;
- a listener that accepts and never answers is a `timeout` at the budget, not before.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter

from healthd import runner
from healthd.checks import CheckSpec
from healthd.deadline import Deadline
from healthd.model import Outcome, Reason

SPEC: TypeAdapter[Any] = TypeAdapter(CheckSpec)

# kind → its own keys for a server at {host}:{port}
TARGETS: dict[str, dict[str, str]] = {
    "postgres": {"dsn": "postgresql://postgres@{host}:{port}/test"},
    "mysql": {"dsn": "mysql://root@{host}:{port}/test"},
    "redis": {"url": "redis://{host}:{port}/0"},
    "amqp": {"url": "amqp://guest:guest@{host}:{port}/"},
    "mqtt": {"url": "mqtt://{host}:{port}"},
    "nats": {"url": "nats://{host}:{port}"},
    "grpc": {"target": "{host}:{port}"},
    "http": {"url": "http://{host}:{port}/healthz"},
    "remote": {"url": "http://{host}:{port}/readyz"},
    "tcp": {"address": "{host}:{port}"},
}
SILENT = [kind for kind in TARGETS if kind != "tcp"]  # a connect is all tcp asks for


async def run(kind: str, host: str, port: int) -> Any:
    keys = {k: v.format(host=host, port=port) for k, v in TARGETS[kind].items()}
    spec = SPEC.validate_python({"name": "c", "kind": kind, "timeout": "300ms", **keys})
    return await runner.run(spec, spec.build(), Deadline.after(5.0))


@pytest.mark.parametrize("kind", list(TARGETS))
async def test_refused_port_fails_fast(kind: str, refused_port: int) -> None:
    """Nothing listening: `refused`, well before the deadline."""
    result = await run(kind, "127.0.0.1", refused_port)
    assert (result.outcome, result.reason) == (Outcome.FAIL, Reason.REFUSED), result.message
    assert result.duration < 0.25


@pytest.mark.parametrize("kind", SILENT)
async def test_silent_listener_times_out_at_the_budget(
    kind: str, hung_listener: tuple[str, int]
) -> None:
    """A server that accepts and never speaks: `timeout` at the 300 ms budget, not before."""
    result = await run(kind, *hung_listener)
    assert (result.outcome, result.reason) == (Outcome.TIMEOUT, Reason.TIMEOUT), result.message
    assert 0.28 <= result.duration <= 0.6
