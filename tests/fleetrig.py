"""A real etcd for fleet tests and the fleet benchmark: free ports, a temporary data directory."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.conftest import free_port


class EtcdServer:
    """`etcd` (Debian's etcd-server 3.4) on loopback; `stop()`/`start()` keep the data dir."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary, self.directory = binary, directory
        self.port, self.peer = free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        client, peer = self.url, f"http://127.0.0.1:{self.peer}"
        log = (self.directory / "etcd.log").open("ab")
        self.proc = subprocess.Popen(
            [self.binary, "--name", "t", "--data-dir", str(self.directory / "data"),
             "--listen-client-urls", client, "--advertise-client-urls", client,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"t={peer}"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.close()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"etcd exited {self.proc.returncode}: see {self.directory}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{client}/health", timeout=1) as answer,
            ):
                if b"true" in answer.read():
                    return
            time.sleep(0.1)
        raise RuntimeError("etcd did not become healthy in time")

    def stop(self, sig: signal.Signals = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)
        self.proc = None

    def signal(self, sig: signal.Signals) -> None:
        """SIGSTOP / SIGCONT: etcd frozen (connections hang) and thawed."""
        assert self.proc is not None
        self.proc.send_signal(sig)
