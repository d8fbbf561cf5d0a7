"""`amqp` against the local RabbitMQ (guest/guest) and loopback fault listeners."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from healthd import runner
from healthd.checks.amqp import AmqpSpec
from healthd.deadline import Deadline
from healthd.model import CheckResult, Outcome, Reason

RABBIT = "127.0.0.1:5672"


async def run(url: str, timeout: str = "2s") -> CheckResult:
    spec = AmqpSpec(name="mq", kind="amqp", url=url, timeout=timeout)
    return await runner.run(spec, spec.build(), Deadline.after(5.0))


@pytest.mark.service("amqp")
async def test_opens_connection_and_channel() -> None:
    """guest/guest on the default vhost opens a connection and a channel: pass."""
    result = await run(f"amqp://guest:guest@{RABBIT}/")
    assert result.outcome is Outcome.PASS, result.message
    assert "channel opened on vhost '/'" in result.message
    assert result.duration < 0.5


@pytest.mark.service("amqp")
async def test_encoded_default_vhost() -> None:
    """`/%2F` names the default vhost `/` (RabbitMQ URI rules)."""
    result = await run(f"amqp://guest:guest@{RABBIT}/%2F")
    assert result.outcome is Outcome.PASS, result.message


@pytest.mark.service("amqp")
async def test_wrong_password_is_auth_failed() -> None:
    """A bad login is ACCESS_REFUSED (403) → auth_failed, fast, password not echoed."""
    result = await run(f"amqp://guest:wrong-pw-123@{RABBIT}/")
    assert (result.outcome, result.reason) == (Outcome.FAIL, Reason.AUTH_FAILED)
    assert "403" in result.message
    assert "wrong-pw-123" not in result.message
    assert result.duration < 1.0  # authentication_failure_close: no 3 s silent wait


@pytest.mark.service("amqp")
async def test_missing_vhost_is_unhealthy_and_named() -> None:
    """A vhost that does not exist is NOT_ALLOWED (530) → unhealthy, naming the vhost."""
    result = await run(f"amqp://guest:guest@{RABBIT}/healthd-no-such-vhost")
    assert (result.outcome, result.reason) == (Outcome.FAIL, Reason.UNHEALTHY)
    assert "530" in result.message
    assert "'healthd-no-such-vhost'" in result.message


async def test_timeout_closes_the_connection() -> None:
    """After a timeout the socket is gone: the silent server reads EOF at once."""
    eof = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(8)  # the protocol header, left unanswered
        await reader.read()  # returns b"" when the client has closed
        eof.set()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await run(f"amqp://guest:guest@127.0.0.1:{port}/", timeout="200ms")
        assert result.outcome is Outcome.TIMEOUT
        async with asyncio.timeout(1.0):
            await eof.wait()
    finally:
        server.close()
        await server.wait_closed()


def test_password_never_shown() -> None:
    """The URL's password appears in no str, repr or JSON of the spec or check."""
    spec = AmqpSpec(name="mq", kind="amqp", url="amqp://app:s3cr3t-pw@mq:5672/prod")
    check = spec.build()
    for text in (str(spec), repr(spec), spec.model_dump_json(), repr(check)):
        assert "s3cr3t-pw" not in text
    assert repr(check) == "AmqpCheck('amqp://app:***@mq:5672/prod')"


def test_rejects_other_schemes_without_echoing_the_url() -> None:
    """Only amqp:// and amqps:// are accepted; the error does not repeat the password."""
    with pytest.raises(ValidationError, match="scheme must be one of amqp, amqps") as info:
        AmqpSpec(name="mq", kind="amqp", url="http://app:s3cr3t-pw@mq/")
    assert "s3cr3t-pw" not in str(info.value)
