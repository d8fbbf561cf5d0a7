"""Cached /readyz vs a bare aiohttp handler returning the same bytes: rates and their ratio.

Both servers run on core 0 (taskset), wrk on core 1; runs alternate A/B so drift on a
shared machine hits both sides alike. The figure is the ratio of medians. Both run on the
same event loop, once on asyncio's and once on uvloop's when it is installed.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import free_port, pinned, python, start, stop, wait_ok, write_table

ROUNDS = 5
SECONDS = 4
CONNECTIONS = 32
SCENARIOS = {
    "plain (curl, a load balancer)": [],
    # What a kubelet sends with the probes in config/k8s/deployment.yaml.
    "kubelet, with X-Request-Timeout-Ms": [
        "-H", "Accept: */*", "-H", "User-Agent: kube-probe/1.31",
        "-H", "X-Request-Timeout-Ms: 1900",
    ],
}  # fmt: skip
CONFIG = """
server: {{listen: "127.0.0.1:{port}", admin_listen: "127.0.0.1:{admin}"}}
checks:
  - {{name: loop, kind: loop, interval: 2s}}
  - {{name: self, kind: tcp, address: "127.0.0.1:{port}", interval: 2s, timeout: 500ms}}
  - {{name: disk, kind: disk, path: /, interval: 5s, warn_free_percent: 1, fail_free_percent: 0}}
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url: str, headers: list[str], pid: int) -> tuple[float, float]:
    """(requests per second, the server's CPU µs per request) over one wrk run."""
    before = cpu_seconds(pid)
    out = subprocess.run(
        pinned(1, ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{SECONDS}s", *headers, url]),
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    cpu = cpu_seconds(pid) - before
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    count = re.search(r"(\d+) requests in", out)
    if not rate or not count or "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk run not clean:\n{out}")
    return float(rate.group(1)), cpu / int(count.group(1)) * 1e6


def main() -> int:
    if shutil.which("wrk") is None:
        print("bench: wrk is needed (apt-get install wrk)", file=sys.stderr)
        return 2
    here = Path(__file__).parent
    bare_port, healthd_port, admin = free_port(), free_port(), free_port()
    bare_url = f"http://127.0.0.1:{bare_port}/readyz"
    healthd_url = f"http://127.0.0.1:{healthd_port}/readyz"
    rows, notes = [], []
    loops = ["asyncio"] + (["uvloop"] if importlib.util.find_spec("uvloop") else [])
    loops = os.environ.get("BENCH_LOOPS", ",".join(loops)).split(",")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "bench.yaml"
        cfg.write_text(CONFIG.format(port=healthd_port, admin=admin))
        for loop in loops:
            env = {"HEALTHD_EVENT_LOOP": loop}
            bare = start(
                [python(), str(here / "bare_server.py"), str(bare_port)], bare_port, env=env
            )
            daemon = start(
                [python(), "-m", "healthd", "run", "-c", str(cfg)], healthd_port, env=env
            )
            try:
                wait_ok(healthd_url)  # its first runs are spread over their interval
                for name, headers in SCENARIOS.items():
                    wrk(bare_url, headers, bare.pid)  # warm-up both
                    wrk(healthd_url, headers, daemon.pid)
                    bare_runs, healthd_runs = [], []
                    for _ in range(ROUNDS):
                        bare_runs.append(wrk(bare_url, headers, bare.pid))
                        healthd_runs.append(wrk(healthd_url, headers, daemon.pid))
                    bare_rates = [r for r, _ in bare_runs]
                    healthd_rates = [r for r, _ in healthd_runs]
                    b, h = statistics.median(bare_rates), statistics.median(healthd_rates)
                    bc = statistics.median(c for _, c in bare_runs)
                    hc = statistics.median(c for _, c in healthd_runs)
                    rows.append([loop, name, f"{b:,.0f}", f"{h:,.0f}", f"{h / b:.2f}",
                                 f"{bc:.1f} / {hc:.1f}", f"{bc / hc:.2f}"])  # fmt: skip
                    ratios = zip(healthd_rates, bare_rates, strict=True)
                    notes.append(f"{loop}, {name}: " + ", ".join(f"{x / y:.2f}" for x, y in ratios))
            finally:
                stop(bare)
                stop(daemon)
    text = (
        f"wrk -t1 -c{CONNECTIONS} -d{SECONDS}s; servers on core 0, wrk on core 1; median of "
        f"{ROUNDS} alternating rounds (bare, healthd, bare, ...). Per-round ratios: "
        + "; ".join(notes)
        + ". CPU per request is each server's utime+stime over the requests wrk counted: on a"
        " loaded machine it is steadier than the rates. Goal: ratio >= 0.9."
    )
    header = ["loop", "requests", "bare aiohttp req/s", "healthd cached /readyz req/s", "ratio",
              "CPU µs/request bare / healthd", "CPU ratio"]  # fmt: skip
    write_table("throughput", "Cached /readyz vs a bare aiohttp handler", header, rows, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
