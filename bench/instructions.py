"""Cached /readyz vs a bare aiohttp handler, in instructions per request (callgrind).

bench/throughput.py's rates swing 0.8-1.3 between rounds on this shared machine; an
instruction count does not: valgrind's callgrind counts what the server's code executes,
whatever else the machine is doing. Each server runs under callgrind with instrumentation
off until warm; then N requests (on 8 keep-alive connections, a plain client and a
kubelet-shaped one) are counted, and so are 10 idle seconds afterwards: the daemon's own
background (its checks, the lag monitor) runs by the wall clock, which valgrind slows down
about fifty times, so its instructions over the measured seconds are subtracted.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import free_port, python, wait_ok, write_table

N = 2000
IDLE = 10.0  # seconds of background counted after the requests
CONNECTIONS = 8
REQUESTS = {
    "plain (curl, a load balancer)": b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    "kubelet, with X-Request-Timeout-Ms": (
        b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n"
        b"User-Agent: kube-probe/1.31\r\nX-Request-Timeout-Ms: 1900\r\n\r\n"
    ),
}
CONFIG = """
server: {{listen: "127.0.0.1:{port}", admin_listen: "127.0.0.1:{admin}"}}
checks:
  - {{name: loop, kind: loop, interval: 60s}}
  - {{name: self, kind: tcp, address: "127.0.0.1:{port}", interval: 60s, timeout: 5s}}
"""


def ask(port: int, request: bytes, n: int) -> float:
    """`n` requests over CONNECTIONS keep-alive connections, one at a time; seconds taken."""
    conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(CONNECTIONS)]
    started = time.monotonic()
    try:
        for i in range(n):
            conn = conns[i % CONNECTIONS]
            conn.sendall(request)
            data = b""
            while not (b"\r\n\r\n" in data and data.endswith(b"}")):
                chunk = conn.recv(4096)
                if not chunk:
                    raise RuntimeError("connection closed mid-answer")
                data += chunk
            if not data.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"not a 200: {data[:60]!r}")
    finally:
        for conn in conns:
            conn.close()
    return time.monotonic() - started


def control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True)


def totals(path: Path) -> int:
    match = re.search(r"^totals: (\d+)", path.read_text(), re.M)
    if match is None:
        raise RuntimeError(f"{path}: no totals")
    return int(match.group(1))


def measure(argv: list[str], port: int, out: Path) -> dict[str, tuple[int, int]]:
    """{scenario: (raw instructions per request, corrected)} for one server."""
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no",
         f"--callgrind-out-file={out}", *argv],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    pid = str(proc.pid)
    try:
        wait_ok(f"http://127.0.0.1:{port}/readyz", timeout=300)
        seconds = {}
        for name, request in REQUESTS.items():
            ask(port, request, 200)  # warm: connections, caches, first allocations
            control("-i", "on", pid)
            seconds[name] = ask(port, request, N)
            control("-i", "off", pid)
            control("-d", pid)  # one dump file per scenario (.1, .2)
        control("-i", "on", pid)
        time.sleep(IDLE)
        control("-i", "off", pid)
        control("-d", pid)
        time.sleep(1)
    finally:
        proc.kill()
        proc.wait(10)
    dumps = sorted(out.parent.glob(f"{out.name}.*"), key=lambda p: int(p.suffix[1:]))
    *runs, idle = [totals(p) for p in dumps[-len(REQUESTS) - 1 :]]
    rate = idle / IDLE
    return {
        name: (raw // N, round((raw - rate * seconds[name]) / N))
        for (name, raw) in zip(REQUESTS, runs, strict=True)
    }


def main() -> int:
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("bench: valgrind is needed (apt-get install valgrind)", file=sys.stderr)
        return 2
    here = Path(__file__).parent
    with tempfile.TemporaryDirectory() as tmp:
        bare_port, port, admin = free_port(), free_port(), free_port()
        cfg = Path(tmp) / "bench.yaml"
        cfg.write_text(CONFIG.format(port=port, admin=admin))
        bare = measure(
            [python(), str(here / "bare_server.py"), str(bare_port)], bare_port, Path(tmp) / "bare"
        )
        daemon = measure(
            [python(), "-m", "healthd", "run", "-c", str(cfg)], port, Path(tmp) / "healthd"
        )
    rows = [
        [name, f"{b[1]:,}", f"{h[1]:,}", f"{b[1] / h[1]:.2f}", f"{b[0]:,} / {h[0]:,}"]
        for name, b, h in ((name, bare[name], daemon[name]) for name in REQUESTS)
    ]
    header = ["requests", "bare aiohttp instr/request", "healthd cached /readyz instr/request",
              "ratio (bare / healthd)", "raw, before the background is taken out"]  # fmt: skip
    notes = (
        f"valgrind --tool=callgrind, asyncio's loop; {N} requests per scenario on "
        f"{CONNECTIONS} keep-alive connections, after 200 to warm up; each server's "
        f"background over the measured seconds taken out at the rate of {IDLE:.0f} idle "
        "seconds counted right after. A ratio above 1 means healthd executes fewer "
        "instructions per cached answer than the bare handler. Goal: ratio >= 0.9."
    )
    write_table("instructions", "Cached /readyz vs a bare aiohttp handler, instructions", header,
                rows, notes)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
