"""`mqtt` against the local Mosquitto, a private password-protected one, and fault listeners."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from healthd import runner
from healthd.checks.mqtt import MqttSpec, connect_packet
from healthd.deadline import Deadline
from healthd.model import CheckResult, Outcome, Reason

MOSQUITTO = "127.0.0.1:1883"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def run(url: str, timeout: str = "2s") -> CheckResult:
    spec = MqttSpec(name="broker", kind="mqtt", url=url, timeout=timeout)
    return await runner.run(spec, spec.build(), Deadline.after(5.0))


@pytest.fixture
async def private_mosquitto(tmp_path: Path) -> AsyncIterator[int]:
    """A Mosquitto on a free port that only lets user `u` with password `p` in."""
    if not (shutil.which("mosquitto") and shutil.which("mosquitto_passwd")):
        pytest.skip("mosquitto is not installed")
    passwords = tmp_path / "passwords"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwords), "u", "p"], check=True)
    port = free_port()
    config = tmp_path / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwords}\n"
        "user root\nlog_dest stderr\npersistence false\n"  # root: tmp_path is not world-readable
    )
    proc = await asyncio.create_subprocess_exec(
        "mosquitto", "-c", str(config), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
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
