"""Private servers for tests that stop, pause or misconfigure one: PostgreSQL, Redis, NATS;
fault listeners (silent, full accept queue, mute UDP), a gRPC health server, and throwaway
MariaDB and RabbitMQ users (their connections can then be counted as ours alone).

Each server runs on a free loopback port and can be stopped and started again on that same
port (tests/test_chaos.py); the throwaway users are the only thing created on the shared
servers, and they are dropped on the way out. Without the server's
binaries a test skips locally and fails under CI=true (`need`, tests/conftest.py).
PostgreSQL refuses to run as root, so as root it runs as `postgres` through `runuser`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiomysql
import grpc
import pytest
from grpc_health.v1 import health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from tests.conftest import free_port, need


def _quietly(*argv: str, check: bool = True) -> None:
    subprocess.run(argv, check=check, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class Postgres:
    """A private PostgreSQL cluster with scram-sha-256 auth (TLS too, given a certificate)."""

    def __init__(self, root: Path, tls: tuple[Path, Path] | None = None) -> None:
        places = ["/usr/lib/postgresql/*/bin/{}"]
        why = "for a private PostgreSQL (server binaries)"
        self.initdb = need("initdb", why, [p.format("initdb") for p in places])
        self.pg_ctl = need("pg_ctl", why, [p.format("pg_ctl") for p in places])
        self.root, self.data = root, root / "data"
        self.port, self.password = free_port(), f"pw-{uuid.uuid4().hex}"
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        (root / "pwfile").write_text(self.password)
        self.options = f"-p {self.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        if tls is not None:
            for source, name in zip(tls, ("server.crt", "server.key"), strict=True):
                shutil.copy(source, root / name)
            os.chmod(root / "server.key", 0o600)  # the server refuses a key others can read
            self.options += f" -c ssl=on -c ssl_cert_file={root}/server.crt"
            self.options += f" -c ssl_key_file={root}/server.key"
        if os.geteuid() == 0:
            for path in [root, *root.iterdir()]:
                shutil.chown(path, "postgres")
        _quietly(*self.as_postgres, self.initdb, "-D", str(self.data), "-U", "postgres",
                 "-A", "scram-sha-256", f"--pwfile={root}/pwfile", "--no-sync",
                 "--no-instructions")  # fmt: skip

    def dsn(self, password: str | None = None, database: str = "postgres") -> str:
        secret = self.password if password is None else password
        return f"postgresql://postgres:{secret}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """Start the server and wait until it accepts connections (`pg_ctl -w`)."""
        _quietly(*self.as_postgres, self.pg_ctl, "-D", str(self.data), "-o", self.options,
                 "-w", "-t", "60", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """Stop it: `fast` ends every session first, `immediate` is a crash."""
        _quietly(*self.as_postgres, self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop",
                 check=False)  # fmt: skip


@contextlib.contextmanager
def postgres_server(tls: tuple[Path, Path] | None = None) -> Iterator[Postgres]:
    """A started private PostgreSQL, stopped and deleted on exit."""
    root = Path(tempfile.mkdtemp(prefix="healthd-pg-"))
    try:
        server = Postgres(root, tls)
        server.start()
        try:
            yield server
        finally:
            server.stop("immediate")
    finally:
        shutil.rmtree(root, ignore_errors=True)


class Redis:
    """A private redis-server with a password (TLS only, given a certificate and key)."""

    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        self.binary = need("redis-server", "for a private Redis")
        self.port, self.password = free_port(), f"pw-{uuid.uuid4().hex}"
        argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--requirepass", self.password]
        if tls is not None:
            cert, key = tls
            argv += ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"]
            argv += ["--tls-cert-file", str(cert), "--tls-key-file", str(key)]
        self.argv = [*argv, "--save", "", "--appendonly", "no", "--daemonize", "no"]
        self.process: subprocess.Popen[str] | None = None

    def url(self, password: str | None = None, db: int = 0) -> str:
        secret = self.password if password is None else password
        return f"redis://:{secret}@127.0.0.1:{self.port}/{db}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        """Start it and wait for "Ready to accept connections"."""
        self.process = process = subprocess.Popen(self.argv, stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None
        for line in process.stdout:  # ends when the server exits
            if "Ready to accept connections" in line:
                return
        self.stop()
        pytest.fail("redis-server exited before it was ready")

    def stop(self, sig: signal.Signals = signal.SIGKILL) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


@contextlib.contextmanager
def redis_server(tls: tuple[Path, Path] | None = None) -> Iterator[Redis]:
    """A started private redis-server, killed on exit."""
    server = Redis(tls)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.asynccontextmanager
async def nats_server(
    *extra: str, login: bool = True
) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    """A nats-server on a free port: (process, port). With `login` it wants user `u`,
    password `p`; `extra` goes on its command line (e.g. `-m PORT` for monitoring)."""
    binary = need("nats-server", "for a private NATS server")
    port = free_port()
    argv = [binary, "-a", "127.0.0.1", "-p", str(port)]
    argv += ["--user", "u", "--pass", "p"] if login else []
    proc = await asyncio.create_subprocess_exec(
        *argv, *extra, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert proc.stderr is not None
    try:
        async with asyncio.timeout(5):
            while b"Server is ready" not in await proc.stderr.readline():
                pass
        yield proc, port
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)  # nats-server's clean stop
        await proc.wait()


@contextlib.asynccontextmanager
async def silent_listener() -> AsyncIterator[int]:
    """A loopback port that accepts connections and never says a word: its port.

    Unlike conftest's `hung_listener` it closes each connection when the client does,
    so thousands of timed-out clients (a soak) leave nothing open on either side.
    """

    open_: set[asyncio.StreamWriter] = set()

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        open_.add(writer)
        with contextlib.suppress(OSError):
            while await reader.read(65536):
                pass
        open_.discard(writer)
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in open_:
            writer.close()
        await server.wait_closed()
        await asyncio.sleep(0)  # let each handler see its EOF and return


@contextlib.contextmanager
def blackhole() -> Iterator[int]:
    """A port whose accept queue is full: a connect to it hangs (SYNs dropped)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield port
    finally:
        for sock in [*fillers, listener]:
            sock.close()


@contextlib.contextmanager
def mute_udp() -> Iterator[int]:
    """A UDP port that reads and never answers (a DNS server that times out)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


@contextlib.asynccontextmanager
async def grpc_health() -> AsyncIterator[int]:
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health_aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(None)


def rabbitmqctl(*args: str) -> str:
    binary = need("rabbitmqctl", "to count RabbitMQ's connections")
    done = subprocess.run([binary, "-q", *args], capture_output=True, text=True, check=True)
    return done.stdout


@contextlib.contextmanager
def rabbit_user(name: str, password: str) -> Iterator[None]:
    rabbitmqctl("add_user", name, password)
    try:
        rabbitmqctl("set_permissions", "-p", "/", name, ".*", ".*", ".*")
        yield
    finally:
        rabbitmqctl("delete_user", name)


@contextlib.asynccontextmanager
async def mysql_user(name: str, password: str) -> AsyncIterator[None]:
    conn = await aiomysql.connect(host="127.0.0.1", port=3306, user="root", db="test")
    try:
        async with conn.cursor() as cur:
            await cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (name, password))
        yield
    finally:
        async with conn.cursor() as cur:
            await cur.execute("DROP USER IF EXISTS %s@'%%'", (name,))
        conn.close()
