"""`nats` against the local nats-server, a private one with a login, and fault listeners."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from healthd import runner
from healthd.checks.nats import NatsSpec
from healthd.deadline import Deadline
from healthd.model import CheckResult, Outcome, Reason
from tests.servers import nats_server

NATS = "127.0.0.1:4222"


async def run(url: str, timeout: str = "2s") -> CheckResult:
    spec = NatsSpec(name="bus", kind="nats", url=url, timeout=timeout)
    return await runner.run(spec, spec.build(), Deadline.after(5.0))


@pytest.fixture
async def private_nats() -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    async with nats_server() as server:
        yield server


@pytest.mark.service("nats")
async def test_ping_pong() -> None:
    """CONNECT and PING to the local server gets PONG: pass."""
    result = await run(f"nats://{NATS}")
    assert result.outcome is Outcome.PASS, result.message
    assert result.message.startswith("PONG from ")
    assert result.duration < 0.5


async def test_user_and_password_pass(private_nats: tuple[asyncio.subprocess.Process, int]) -> None:
    """User and password from the URL go into CONNECT and are accepted."""
    _, port = private_nats
    result = await run(f"nats://u:p@127.0.0.1:{port}")
    assert result.outcome is Outcome.PASS, result.message


async def test_wrong_password_is_auth_failed(
    private_nats: tuple[asyncio.subprocess.Process, int],
) -> None:
    """`-ERR 'Authorization Violation'` → auth_failed, and the password is not echoed."""
    _, port = private_nats
    result = await run(f"nats://u:wrong-pw-123@127.0.0.1:{port}")
    assert (result.outcome, result.reason) == (Outcome.FAIL, Reason.AUTH_FAILED)
    assert "Authorization Violation" in result.message
    assert "wrong-pw-123" not in result.message


async def test_wrong_token_is_auth_failed(
    private_nats: tuple[asyncio.subprocess.Process, int],
) -> None:
    """A token URL (`nats://token@host`) is sent as auth_token; a wrong one → auth_failed."""
    _, port = private_nats
    result = await run(f"nats://tok-123456@127.0.0.1:{port}")
    assert (result.outcome, result.reason) == (Outcome.FAIL, Reason.AUTH_FAILED)
    assert "tok-123456" not in result.message


async def test_server_killed_mid_run_is_refused(
    private_nats: tuple[asyncio.subprocess.Process, int],
) -> None:
    """A server that passes, then is stopped, is refused on the next run."""
    proc, port = private_nats
    url = f"nats://u:p@127.0.0.1:{port}"
    assert (await run(url)).outcome is Outcome.PASS
    proc.send_signal(signal.SIGINT)
    await proc.wait()
    result = await run(url)
    assert (result.outcome, result.reason) == (Outcome.FAIL, Reason.REFUSED)


@pytest.mark.service("nats")
async def test_tls_url_against_plain_server_is_tls() -> None:
    """`tls://` to a server that offers no TLS fails with reason tls, saying so."""
    result = await run(f"tls://{NATS}")
    assert (result.outcome, result.reason) == (Outcome.FAIL, Reason.TLS)
    assert "does not offer TLS" in result.message


def test_secrets_never_shown() -> None:
    """Neither a password nor a token appears in any str, repr or JSON of spec or check."""
    for url, shown in [
        ("nats://app:s3cr3t-pw@bus:4222", "NatsCheck('nats://app:***@bus:4222')"),
        ("nats://s3cr3t-pw@bus:4222", "NatsCheck('nats://***@bus:4222')"),
    ]:
        spec = NatsSpec(name="bus", kind="nats", url=url)
        check = spec.build()
        for text in (str(spec), repr(spec), spec.model_dump_json(), repr(check)):
            assert "s3cr3t-pw" not in text
        assert repr(check) == shown


async def test_tls_server_passes_when_its_certificate_is_trusted(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TLS-only nats-server: trusted (SSL_CERT_FILE) passes; untrusted is `tls`."""
    cert, key = certificate
    async with nats_server("--tls", "--tlscert", str(cert), "--tlskey", str(key)) as (_, port):
        untrusted = await run(f"nats://u:p@127.0.0.1:{port}")
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # OpenSSL's default trust, as in prod
        trusted = await run(f"nats://u:p@127.0.0.1:{port}")
    assert trusted.outcome is Outcome.PASS, trusted.message
    assert (untrusted.outcome, untrusted.reason) == (Outcome.FAIL, Reason.TLS)
