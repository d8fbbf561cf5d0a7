"""healthd at N tcp checks (reference §11): fresh pass, background CPU, cached /readyz, callers.

First the **connect floor**: the CPU that bare asyncio spends per `open_connection` + close
to the same local listeners, N at once, in a process on the daemon's core (the least a
tcp check run can cost). The figures that bind are ratios to it, measured in the same run
(these machines differ by 2x). For each N in 10, 100, 1,000 and 5,000, a real
`python -m healthd run -c cfg` on core 0 (taskset), the listeners and clients on core 1:

- fresh: every check `on_demand`; `/health?fresh=1` passes timed by wall clock, the
  daemon's CPU (utime + stime from /proc/<pid>/stat) divided by the check runs;
- background: every check at `interval: 1s`; the daemon's CPU share of one core over
  `WINDOW` seconds, then 500 sequential cached `/readyz` on one keep-alive connection
  (p50/p99), then 300 cached `/readyz` each on a new connection (p50/p99: what a kubelet
  or a load balancer that does not keep connections sees), then RSS (VmRSS);
- callers: 200 concurrent `/health` with `X-Request-Timeout-Ms: 300` while one
  `on_demand` check hangs (a TCP connect to a full accept queue): min, p50, p99, max.

The tcp checks connect to `PORTS` local listeners (one process) that accept and close.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from _common import free_port, pinned, python, wait_listening, write_table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.servers import blackhole

SIZES = [int(n) for n in os.environ.get("SCALE_SIZES", "10,100,1000,5000").split(",")]
WINDOW = 10.0  # seconds of background CPU sampled
WARMUP = 4.0
CALLERS = 200
BUDGET_MS = 300
PORTS = 4
TICK = os.sysconf("SC_CLK_TCK")

LISTENER = """
import selectors, socket, sys
sel = selectors.DefaultSelector()
for port in sys.argv[1:]:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(port))); s.listen(4096); s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        while True:
            try:
                conn, _ = key.fileobj.accept()
            except BlockingIOError:
                break
            conn.close()
"""


def config(n: int, ports: list[int], port: int, admin: int, mode: str, hung: int | None) -> str:
    lines = [
        f'server: {{listen: "127.0.0.1:{port}", admin_listen: "127.0.0.1:{admin}"}}',
        "deadline: {default: 10s, max: 30s}",
        "groups: {readiness: {include: ['*'], exclude: [hung]}}" if hung else "",
        "checks:",
    ]
    timing = "interval: 1s, timeout: 500ms" if mode == "background" else "mode: on_demand"
    for i in range(n):
        address = f"127.0.0.1:{ports[i % len(ports)]}"
        lines.append(f'  - {{name: t{i}, kind: tcp, address: "{address}", {timing}}}')
    if hung:
        lines.append(
            f'  - {{name: hung, kind: tcp, address: "127.0.0.1:{hung}", mode: on_demand, '
            "timeout: 5s, interval: 30s}"
        )
    return "\n".join(lines) + "\n"


FLOOR = """
import asyncio, resource, sys
n, rounds, ports = int(sys.argv[1]), int(sys.argv[2]), [int(p) for p in sys.argv[3:]]
async def one(port):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.close()
    await writer.wait_closed()
async def main():
    await asyncio.gather(*(one(ports[i % len(ports)]) for i in range(n)))  # warm-up
    before = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(rounds):
        await asyncio.gather(*(one(ports[i % len(ports)]) for i in range(n)))
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(cpu / (n * rounds) * 1e6)
asyncio.run(main())
"""


def floor(n: int, ports: list[int]) -> float:
    """CPU µs per bare asyncio open_connection + close, `n` at once, on the daemon's core."""
    rounds = max(5, 2000 // n)
    out = subprocess.run(
        pinned(0, [python(), "-c", FLOOR, str(n), str(rounds), *map(str, ports)]),
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return float(out.stdout.strip())


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def daemon(cfg: Path, port: int) -> subprocess.Popen[bytes]:
    def raise_fd_limit() -> None:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    proc = subprocess.Popen(
        pinned(0, [python(), "-m", "healthd", "run", "-c", str(cfg)]),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=raise_fd_limit,
    )  # fmt: skip
    wait_listening(port, 60.0)
    return proc


def get(conn: http.client.HTTPConnection, path: str) -> int:
    conn.request("GET", path)
    resp = conn.getresponse()
    resp.read()
    return resp.status


def fresh(n: int, ports: list[int], tmp: Path) -> dict[str, float]:
    port, admin = free_port(), free_port()
    cfg = tmp / f"fresh-{n}.yaml"
    cfg.write_text(config(n, ports, port, admin, "on_demand", None))
    proc = daemon(cfg, port)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        get(conn, "/health?fresh=1")  # warm-up: connections, imports, first allocations
        passes = max(5, 2000 // n)
        walls = []
        before = cpu_seconds(proc.pid)
        for _ in range(passes):
            started = time.perf_counter()
            get(conn, "/health?fresh=1")
            walls.append(time.perf_counter() - started)
        cpu = cpu_seconds(proc.pid) - before
        return {"wall_ms": statistics.median(walls) * 1000, "cpu_us": cpu / (passes * n) * 1e6}
    finally:
        proc.kill()
        proc.wait(10)


async def callers(port: int) -> list[float]:
    """Latency of CALLERS concurrent /health with a BUDGET_MS budget, on warm connections."""
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(path: str, headers: dict[str, str]) -> float:
            started = time.perf_counter()
            async with session.get(f"http://127.0.0.1:{port}{path}", headers=headers) as resp:
                await resp.read()
            return time.perf_counter() - started

        await asyncio.gather(*(one("/livez", {}) for _ in range(CALLERS)))  # open connections
        headers = {"X-Request-Timeout-Ms": str(BUDGET_MS)}
        return await asyncio.gather(*(one("/health", headers) for _ in range(CALLERS)))


def background(n: int, ports: list[int], hung: int, tmp: Path) -> dict[str, float]:
    port, admin = free_port(), free_port()
    cfg = tmp / f"background-{n}.yaml"
    cfg.write_text(config(n, ports, port, admin, "background", hung))
    proc = daemon(cfg, port)
    try:
        time.sleep(WARMUP)
        before, started = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(WINDOW)
        share = (cpu_seconds(proc.pid) - before) / (time.monotonic() - started)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        latencies = []
        for _ in range(500):
            started = time.perf_counter()
            get(conn, "/readyz")
            latencies.append(time.perf_counter() - started)
        latencies.sort()
        fresh_conn = []
        for _ in range(300):
            started = time.perf_counter()
            once = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            get(once, "/readyz")
            once.close()
            fresh_conn.append(time.perf_counter() - started)
        fresh_conn.sort()
        rss = rss_mb(proc.pid)
        answered = sorted(asyncio.run(callers(port)))
        return {
            "share": share * 100,
            "bg_cpu_us": share / n * 1e6,  # one run per check per second
            "p50": latencies[len(latencies) // 2] * 1000,
            "p99": latencies[int(len(latencies) * 0.99)] * 1000,
            "new_p50": fresh_conn[len(fresh_conn) // 2] * 1000,
            "new_p99": fresh_conn[int(len(fresh_conn) * 0.99)] * 1000,
            "rss": rss,
            "c_min": answered[0] * 1000,
            "c_p50": answered[len(answered) // 2] * 1000,
            "c_p99": answered[int(len(answered) * 0.99)] * 1000,
            "c_max": answered[-1] * 1000,
        }
    finally:
        proc.kill()
        proc.wait(10)


def main() -> int:
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # this process and the listeners: core 1
    ports = [free_port() for _ in range(PORTS)]
    listener = subprocess.Popen([python(), "-c", LISTENER, *map(str, ports)])
    for port in ports:
        wait_listening(port)
    rows, loads, ratios = [], [], []
    per_run: dict[int, float] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp, blackhole() as hung:
            for n in SIZES:
                loads.append(os.getloadavg()[0])
                bare = floor(n, ports)
                f = fresh(n, ports, Path(tmp))
                b = background(n, ports, hung, Path(tmp))
                per_run[n] = f["cpu_us"]
                print(n, bare, f, b, file=sys.stderr)
                spread = " / ".join(f"{b[k]:.0f}" for k in ("c_min", "c_p50", "c_p99", "c_max"))
                line = (
                    f"N={n:,}: floor {bare:.0f} µs; fresh {f['cpu_us'] / bare:.2f}x; "
                    f"background {b['bg_cpu_us'] / bare:.2f}x; /readyz new-conn p99 "
                    f"{b['new_p99']:.1f} ms, keep-alive p99 {b['p99']:.1f} ms; callers p99 "
                    f"{b['c_p99']:.0f} ms"
                )
                print(line)
                ratios.append(line)
                rows.append([f"{n:,}", f"{bare:.0f}", f"{f['wall_ms']:.0f}",
                             f"{f['cpu_us']:.0f} ({f['cpu_us'] / bare:.2f}x)",
                             f"{b['share']:.1f} %",
                             f"{b['bg_cpu_us']:.0f} ({b['bg_cpu_us'] / bare:.2f}x)",
                             f"{b['p50']:.2f} / {b['p99']:.2f}",
                             f"{b['new_p50']:.2f} / {b['new_p99']:.2f}",
                             f"{b['rss']:.0f}", spread])  # fmt: skip
    finally:
        listener.kill()
        listener.wait(10)
    if 100 in per_run and 5000 in per_run:
        line = f"cost per run at 5,000 / at 100: {per_run[5000] / per_run[100]:.2f}x"
        print(line)
        ratios.append(line)
    header = ["N checks", "connect floor µs", "fresh pass ms", "CPU µs/run (fresh, x floor)",
              "background CPU", "CPU µs/run (bg, x floor)",
              "cached /readyz keep-alive p50 / p99 ms", "cached /readyz new conn p50 / p99 ms",
              "RSS MB",
              f"{CALLERS} callers, {BUDGET_MS} ms budget: min / p50 / p99 / max ms"]  # fmt: skip
    notes = (
        f"tcp checks to {PORTS} local listeners that accept and close; the daemon (and the "
        "floor) on core 0, listeners and clients on core 1. Floor: bare asyncio "
        "open_connection + close, N at once, CPU per connection. Background: `interval: 1s`, "
        f"CPU share of one core over {WINDOW:.0f} s; cached /readyz: 500 sequential requests on "
        "one keep-alive connection, then 300 each on a new connection, meanwhile. Callers: "
        f"{CALLERS} concurrent /health on warm connections, one `on_demand` check hung. "
        "Load average (1 min) before each N: "
        + ", ".join(f"{x:.1f}" for x in loads)
        + f". Event loop: {'uvloop' if _uvloop() else 'asyncio'}; JSON: "
        + ("orjson" if _has("orjson") else "stdlib")
        + ". Targets (reference §11): fresh ≤ 1.2x the floor per run at 1,000; background ≤ 1.5x; "
        "cached /readyz on a new connection p99 ≤ 5 ms at 1,000 and ≤ 20 ms at 5,000; cost per "
        "run at 5,000 within 1.3x of 100; callers p99 within [270, 300] ms.\n\n"
        + "\n".join(f"- {r}" for r in ratios)
    )
    write_table("scale", "healthd at N tcp checks", header, rows, notes)
    return 0


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _uvloop() -> bool:
    return _has("uvloop") and os.environ.get("HEALTHD_EVENT_LOOP", "") == "uvloop"


if __name__ == "__main__":
    raise SystemExit(main())
