"""Shared fixtures: real loopback servers, service markers, fault listeners."""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest

SERVICES = {
    "postgres": ("127.0.0.1", 5432),
    "mysql": ("127.0.0.1", 3306),
    "redis": ("127.0.0.1", 6379),
    "amqp": ("127.0.0.1", 5672),
    "mqtt": ("127.0.0.1", 1883),
    "nats": ("127.0.0.1", 4222),
}


def under_ci() -> bool:
    return os.environ.get("CI") == "true"


def need(tool: str, why: str, places: Sequence[str] = ()) -> str:
    """The path of program `tool` (on PATH, or the newest match of a glob in `places`).

    Without it the test skips locally, and FAILS under CI=true: `make test` installs every
    tool the suite needs (scripts/tools.sh), so a missing one there is a broken machine.
    """
    found = [path for place in places for path in sorted(glob.glob(place))]
    path = found[-1] if found else shutil.which(tool)
    if path is None:
        message = f"{tool} not found, needed {why} (scripts/tools.sh installs it)"
        if under_ci():
            pytest.fail(f"{message}; CI=true: a missing tool is a failure")
        pytest.skip(message)
    return path


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def pytest_runtest_setup(item: pytest.Item) -> None:
    """`@pytest.mark.service("redis")`: skip when unreachable, but fail under CI=true."""
    for marker in item.iter_markers(name="service"):
        name = marker.args[0]
        host, port = SERVICES[name]
        if not _reachable(host, port):
            message = f"{name} is not reachable on {host}:{port}"
            if under_ci():
                pytest.fail(f"{message} (CI=true: a missing service is a failure)")
            pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def hung_listener() -> AsyncIterator[tuple[str, int]]:
    """A TCP listener that accepts connections and never says a word."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield "127.0.0.1", port
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.fixture
def refused_port() -> int:
    """A loopback port with nothing listening on it."""
    return free_port()


@pytest.fixture
def blackhole() -> Iterator[tuple[str, int]]:
    """A port whose accept queue is full: a TCP connect to it hangs (SYNs are dropped)."""
    from tests import servers  # it imports this module

    with servers.blackhole() as port:
        yield "127.0.0.1", port


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed EC certificate for 127.0.0.1 that expires in 3 days."""
    openssl = need("openssl", "to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "3", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key
