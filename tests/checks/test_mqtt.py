"""`mqtt` against the local Mosquitto, a private password-protected one, and fault listeners."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from healthd import runner
from healthd.checks.mqtt import MqttSpec, connect_packet
from healthd.deadline import Deadline
from healthd.model import CheckResult, Outcome, Reason
from tests.conftest import free_port, need

MOSQUITTO = "127.0.0.1:1883"


async def run(url: str, timeout: str = "2s") -> CheckResult:
    spec = MqttSpec(name="broker", kind="mqtt", url=url, timeout=timeout)
    return await runner.run(spec, spec.build(), Deadline.after(5.0))


@contextlib.asynccontextmanager
async def mosquitto(tmp_path: Path, tls: tuple[Path, Path] | None = None) -> AsyncIterator[int]:
    """A Mosquitto on a free port that only lets user `u` with password `p` in (over TLS
    only, given a certificate and key)."""
    broker = need("mosquitto", "for a private MQTT broker")
    make_passwords = need("mosquitto_passwd", "for a private MQTT broker's password file")
    passwords = tmp_path / "passwords"
    subprocess.run([make_passwords, "-c", "-b", str(passwords), "u", "p"], check=True)
    port = free_port()
    config = tmp_path / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwords}\n"
        "user root\nlog_dest stderr\npersistence false\n"  # root: tmp_path is not world-readable
        + (f"certfile {tls[0]}\nkeyfile {tls[1]}\n" if tls else "")
    )
    proc = await asyncio.create_subprocess_exec(
        broker, "-c", str(config), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert proc.stderr is not None
    try:
        async with asyncio.timeout(5):
            while b" running" not in await proc.stderr.readline():
                pass
        yield port
    finally:
        proc.terminate()
        await proc.wait()


@pytest.fixture
async def private_mosquitto(tmp_path: Path) -> AsyncIterator[int]:
    async with mosquitto(tmp_path) as port:
        yield port


@pytest.mark.service("mqtt")
async def test_connack_accepted() -> None:
    """An anonymous CONNECT to the local broker is accepted: pass."""
    result = await run(f"mqtt://{MOSQUITTO}")
    assert result.outcome is Outcome.PASS, result.message
    assert "CONNACK accepted" in result.message
    assert result.duration < 0.5


async def test_right_credentials_pass(private_mosquitto: int) -> None:
    """User and password from the URL are sent in CONNECT and accepted."""
    result = await run(f"mqtt://u:p@127.0.0.1:{private_mosquitto}")
    assert result.outcome is Outcome.PASS, result.message


async def test_wrong_password_is_auth_failed(private_mosquitto: int) -> None:
    """A refused login (CONNACK 4 or 5) → auth_failed, and the password is not echoed."""
    result = await run(f"mqtt://u:wrong-pw-123@127.0.0.1:{private_mosquitto}")
    assert (result.outcome, result.reason) == (Outcome.FAIL, Reason.AUTH_FAILED)
    assert "CONNACK refused" in result.message
    assert "wrong-pw-123" not in result.message


async def test_anonymous_refused_when_login_required(private_mosquitto: int) -> None:
    """No credentials on a broker that wants them → auth_failed."""
    result = await run(f"mqtt://127.0.0.1:{private_mosquitto}")
    assert (result.outcome, result.reason) == (Outcome.FAIL, Reason.AUTH_FAILED)


def test_password_never_shown() -> None:
    """The URL's password appears in no str, repr or JSON of the spec or check."""
    spec = MqttSpec(name="broker", kind="mqtt", url="mqtts://app:s3cr3t-pw@broker:8883")
    check = spec.build()
    for text in (str(spec), repr(spec), spec.model_dump_json(), repr(check)):
        assert "s3cr3t-pw" not in text
    assert repr(check) == "MqttCheck('mqtts://app:***@broker:8883')"


def test_connect_packet_long_remaining_length() -> None:
    """A CONNECT over 127 bytes encodes its remaining length in two bytes (MQTT varint)."""
    packet = connect_packet("c" * 200, "", "")
    body = 10 + 2 + 200  # variable header + client id
    assert packet[:3] == bytes([0x10, (body % 128) | 0x80, body // 128])
    assert len(packet) == 3 + body


async def test_mqtts_passes_when_the_certificate_is_trusted(
    tmp_path: Path, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TLS-only Mosquitto: trusted (SSL_CERT_FILE) passes; untrusted is `tls`."""
    cert, _ = certificate
    async with mosquitto(tmp_path, tls=certificate) as port:
        untrusted = await run(f"mqtts://u:p@127.0.0.1:{port}")
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # OpenSSL's default trust, as in prod
        trusted = await run(f"mqtts://u:p@127.0.0.1:{port}")
    assert trusted.outcome is Outcome.PASS, trusted.message
    assert (untrusted.outcome, untrusted.reason) == (Outcome.FAIL, Reason.TLS)
