"""tcp: a pass means a TCP connection was established."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from healthd import runner
from healthd.checks.tcp import TcpSpec
from healthd.deadline import Deadline
from healthd.model import Outcome, Reason


@pytest.fixture
async def listener() -> AsyncIterator[int]:
    """A loopback listener that accepts and closes."""

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def spec(address: str) -> TcpSpec:
    return TcpSpec(name="port", kind="tcp", address=address, timeout="500ms")


async def test_passes_against_a_listener(listener: int) -> None:
    """A listening port passes and the message names the address."""
    s = spec(f"127.0.0.1:{listener}")
    result = await runner.run(s, s.build(), Deadline.after(5.0))
    assert result.outcome is Outcome.PASS
    assert result.message == f"connected to 127.0.0.1:{listener}"


async def test_unresolvable_host_is_dns() -> None:
    """A name that cannot exist → reason dns."""
    s = spec("does-not-exist.invalid:80")
    result = await runner.run(s, s.build(), Deadline.after(5.0))
    assert (result.outcome, result.reason) == (Outcome.FAIL, Reason.DNS)


def test_address_needs_a_port() -> None:
    """`host` without `:port` is a config error."""
    with pytest.raises(ValueError, match="address"):
        TcpSpec(name="port", kind="tcp", address="localhost")
