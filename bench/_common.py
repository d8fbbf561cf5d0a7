"""Shared benchmark plumbing: free ports, server processes on one core, result tables, fd and
listen-queue counters, and asyncio helpers to drive and signal a real daemon."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port} after {timeout}s")


def wait_ok(url: str, timeout: float = 15.0) -> None:
    """Until `url` answers 200 (a daemon's first runs are spread over their interval)."""
    import urllib.error
    import urllib.request

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within {timeout}s")


def pinned(cpu: int, argv: list[str]) -> list[str]:
    """argv run on one core when the machine has more than one (taskset)."""
    if (os.cpu_count() or 1) > 1 and Path("/usr/bin/taskset").exists():
        return ["taskset", "-c", str(cpu), *argv]
    return argv


def start(
    argv: list[str], port: int, cpu: int = 0, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    environ = {**os.environ, **(env or {})}
    proc = subprocess.Popen(
        pinned(cpu, argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environ
    )
    wait_listening(port)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait(10)


def python() -> str:
    return sys.executable


def write_table(
    name: str, title: str, header: list[str], rows: list[list[str]], notes: str, write: bool = True
) -> str:
    """Print a Markdown table and write it to bench/results/<name>.md (unless not `write`)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join(
        [f"## {title}", "", f"{stamp}, {platform.python_version()}, {os.cpu_count()} cores", "",
         line, rule, *body, "", notes, ""]
    )  # fmt: skip
    if write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{name}.md").write_text(text)
    print(text)
    return text


def raise_nofile(want: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE to `want` (at most the hard limit); the new soft."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = max(soft, want if hard == resource.RLIM_INFINITY else min(want, hard))
    if new != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return new


def fd_census(pid: int) -> dict[str, int]:
    """Open fds of `pid` by kind (socket, pipe, anon_inode, file) and in all (`total`)."""
    kinds: dict[str, int] = {"total": 0}
    base = Path(f"/proc/{pid}/fd")
    for entry in os.listdir(base):
        try:
            target = os.readlink(base / entry)
        except OSError:  # closed between listdir and readlink
            continue
        kind = target.split(":", 1)[0] if ":" in target and not target.startswith("/") else "file"
        kinds[kind] = kinds.get(kind, 0) + 1
        kinds["total"] += 1
    return kinds


def listen_counters() -> dict[str, int]:
    """TcpExt ListenOverflows/ListenDrops for this network namespace (shared with every
    process in it: a delta is an upper bound for one benchmark's SYN drops)."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for head, values in zip(lines[::2], lines[1::2], strict=False):
        if head.startswith("TcpExt:"):
            row = dict(zip(head.split()[1:], map(int, values.split()[1:]), strict=True))
            return {k: row.get(k, 0) for k in ("ListenOverflows", "ListenDrops")}
    return {"ListenOverflows": 0, "ListenDrops": 0}


def listen_backlog(port: int) -> int | None:
    """The accept-queue limit of the socket listening on 127.0.0.1:`port` (`ss` Send-Q)."""
    try:
        out = subprocess.run(
            ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, timeout=5
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    fields = out.split()
    return int(fields[2]) if len(fields) > 2 and fields[2].isdigit() else None


# --- asyncio helpers for benchmarks that drive a real daemon ---------------------------------


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """One HTTP/1.1 answer with a Content-Length: (status, the server closes the connection)."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in head[1:] if ": " in line)
    await reader.readexactly(int(headers.get("content-length", "0")))
    return int(head[0].split()[1]), headers.get("connection") == "close"


async def http_get(port: int, path: str, within: float = 10.0) -> tuple[float, float, int | None]:
    """A lone GET on its own loopback connection: (sent, answered, status or None)."""
    sent = time.time()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        status, _ = await asyncio.wait_for(read_answer(reader), within)
        writer.close()
        return sent, time.time(), status
    except (OSError, asyncio.IncompleteReadError, TimeoutError):
        return sent, time.time(), None


class LoggedProcess:
    """A child process whose stderr lines are kept with their arrival time (wall clock)."""

    def __init__(self) -> None:
        self.lines: list[tuple[float, str]] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._news = asyncio.Event()

    async def start(self, argv: list[str], **kwargs: Any) -> asyncio.subprocess.Process:
        self.proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, **kwargs,
        )  # fmt: skip
        self._reader = asyncio.create_task(self._read(self.proc))
        return self.proc

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        async for raw in proc.stderr:
            self.lines.append((time.time(), raw.decode(errors="replace").rstrip()))
            self._news.set()

    async def line(self, text: str, within: float, after: int = 0) -> tuple[float, str]:
        """The first line from index `after` on that contains `text`: (arrival, line)."""
        end = time.monotonic() + within
        while True:
            for at, line in self.lines[after:]:
                if text in line:
                    return at, line
            self._news.clear()
            left = end - time.monotonic()
            if left <= 0 or self._reader is None or self._reader.done():
                log = "\n".join(x for _, x in self.lines[-20:])
                raise RuntimeError(f"no {text!r} line:\n{log}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._news.wait(), min(left, 0.5))

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)


# Sends SIGTERM at a wall time; then reads a line from stdin: a wall time to SIGSTOP at (and
# SIGCONT `pause` s later), or an empty line for none; prints when each signal went out, then
# waits on a pidfd and prints when the process exited. A process of its own, so a busy
# benchmark loop cannot make a signal late.
_SIGNALLER = """
import os, select, signal, sys, time
pid, at, pause = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
exit_fd = os.pidfd_open(pid)
def at_time(when, sig, name):
    time.sleep(max(0.0, when - time.time()))
    sent = time.time()
    os.kill(pid, sig)
    print(name, repr(sent), flush=True)
at_time(at, signal.SIGTERM, "TERM")
stop_at = sys.stdin.readline().strip()
if stop_at:
    at_time(float(stop_at), signal.SIGSTOP, "STOP")
    at_time(float(stop_at) + pause, signal.SIGCONT, "CONT")
if select.select([exit_fd], [], [], 60)[0]:
    print("EXIT", repr(time.time()), flush=True)
"""


async def signaller(pid: int, term_at: float, pause: float = 0.1) -> asyncio.subprocess.Process:
    """Start the signalling process: write `<wall time>\\n` (SIGSTOP then) or `\\n` (none) to
    its stdin after SIGTERM; `communicate()` then gives `TERM/STOP/CONT/EXIT <wall>` lines."""
    argv = [sys.executable, "-c", _SIGNALLER, str(pid), repr(term_at), repr(pause)]
    return await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
