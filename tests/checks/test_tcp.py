"""tcp: a pass means a TCP connection was established."""

from __future__ import annotations

import asyncio
import contextlib
import os
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


async def test_a_run_builds_no_transport(listener: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run is a bare socket's connect and close: no transport, protocol or streams (those
    were ~40 % of a run's CPU), so neither create_connection nor open_connection is used."""

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("a tcp run built a transport")

    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "create_connection", forbidden)
    monkeypatch.setattr(asyncio, "open_connection", forbidden)
    for address in (f"127.0.0.1:{listener}", f"localhost:{listener}"):
        s = spec(address)
        result = await runner.run(s, s.build(), Deadline.after(5.0))
        assert result.outcome is Outcome.PASS, result.message


async def test_runs_leave_no_descriptor_open(listener: int) -> None:
    """Passing, refused and cancelled runs all close their socket."""
    refused = spec("127.0.0.1:9")  # discard: nothing listens there on loopback
    passing = spec(f"127.0.0.1:{listener}")
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(100):
        assert (await runner.run(passing, passing.build(), Deadline.after(5.0))).outcome is (
            Outcome.PASS
        )
        result = await runner.run(refused, refused.build(), Deadline.after(5.0))
        assert (result.outcome, result.reason) == (Outcome.FAIL, Reason.REFUSED)
    check = passing.build()
    for _ in range(20):  # cancelled mid-connect or just after
        task = asyncio.ensure_future(check(Deadline.after(5.0)))
        await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await asyncio.sleep(0.05)
    assert len(os.listdir("/proc/self/fd")) <= before + 1
