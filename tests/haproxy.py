"""A real HAProxy for tests and benches: start one on a config, read its stats socket.

Shared by tests/podrig.py (the pod shutdown rig) and tests/test_agent_haproxy.py (the
agent-check); everything is on loopback and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import csv
import resource
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

NOFILE = 65536


def more_files() -> None:
    """preexec_fn: raise the open-files limit (HAProxy and wrk at 1,000 connections)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = NOFILE if hard == resource.RLIM_INFINITY else min(NOFILE, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))


def wait_listening(port: int, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port} after {timeout}s")


def show_stat(stats: Path) -> list[dict[str, str]]:
    """`show stat` on HAProxy's socket: one dict per proxy/server row, keyed by column
    (`pxname`, `svname`, `status`, `weight`, `last_agt`, `stot`…)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(2)
        sock.connect(str(stats))
        sock.sendall(b"show stat\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    lines = data.decode(errors="replace").splitlines()
    if not lines or not lines[0].startswith("#"):
        raise RuntimeError(f"HAProxy's stats socket said: {data[:200]!r}")
    header = lines[0].lstrip("# ").split(",")
    return [dict(zip(header, row, strict=False)) for row in csv.reader(lines[1:]) if row]


def servers(stats: Path, backend: str) -> dict[str, dict[str, str]]:
    """The rows of `backend`'s servers, by server name."""
    rows = show_stat(stats)
    return {
        r["svname"]: r
        for r in rows
        if r.get("pxname") == backend and r["svname"] not in ("FRONTEND", "BACKEND")
    }


def wait_for(
    stats: Path,
    backend: str,
    done: Callable[[dict[str, dict[str, str]]], bool],
    timeout: float = 30.0,
    what: str = "",
) -> dict[str, dict[str, str]]:
    """Poll `show stat` until `done(servers)`; the servers then (RuntimeError: never)."""
    end = time.monotonic() + timeout
    seen: dict[str, dict[str, str]] = {}
    while time.monotonic() < end:
        with contextlib.suppress(OSError):
            seen = servers(stats, backend)
            if done(seen):
                return seen
        time.sleep(0.02)
    brief = {n: {k: r.get(k) for k in ("status", "weight", "last_agt")} for n, r in seen.items()}
    raise RuntimeError(f"HAProxy never saw {what or 'the condition'} in {timeout}s: {brief}")


@contextlib.contextmanager
def running(haproxy: str, directory: Path, config: str) -> Iterator[subprocess.Popen[bytes]]:
    """HAProxy in the foreground on `config` (written to `directory`), its log beside it;
    killed on exit."""
    path = directory / "haproxy.cfg"
    path.write_text(config)
    with (directory / "haproxy.log").open("ab") as log:
        proc = subprocess.Popen(
            [haproxy, "-db", "-f", str(path)], preexec_fn=more_files,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(10)
