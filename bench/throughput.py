"""Cached /readyz vs a bare aiohttp handler returning the same bytes: rates and their ratio.

Both servers run on core 0 (taskset), wrk on core 1; runs alternate A/B so drift on a
shared machine hits both sides alike. The figure is the ratio of medians.
"""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import free_port, pinned, python, start, stop, write_table

ROUNDS = 5
SECONDS = 4
CONNECTIONS = 32
KUBELET = ["-H", "Accept: */*", "-H", "User-Agent: kube-probe/1.31"]  # what a kubelet sends
CONFIG = """
server: {{listen: "127.0.0.1:{port}", admin_listen: "127.0.0.1:{admin}"}}
checks:
  - {{name: loop, kind: loop, interval: 2s}}
  - {{name: self, kind: tcp, address: "127.0.0.1:{port}", interval: 2s, timeout: 500ms}}
  - {{name: disk, kind: disk, path: /, interval: 5s, warn_free_percent: 1, fail_free_percent: 0}}
"""


def wrk(url: str) -> float:
    out = subprocess.run(
        pinned(1, ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{SECONDS}s", *KUBELET, url]),
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not match or "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk run not clean:\n{out}")
    return float(match.group(1))


def main() -> int:
    if shutil.which("wrk") is None:
        print("bench: wrk is needed (apt-get install wrk)", file=sys.stderr)
        return 2
    here = Path(__file__).parent
    bare_port, healthd_port, admin = free_port(), free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "bench.yaml"
        cfg.write_text(CONFIG.format(port=healthd_port, admin=admin))
        bare = start([python(), str(here / "bare_server.py"), str(bare_port)], bare_port)
        daemon = start([python(), "-m", "healthd", "run", "-c", str(cfg)], healthd_port)
        try:
            wrk(f"http://127.0.0.1:{bare_port}/readyz")  # warm-up both
            wrk(f"http://127.0.0.1:{healthd_port}/readyz")
            bare_rates, healthd_rates = [], []
            for _ in range(ROUNDS):
                bare_rates.append(wrk(f"http://127.0.0.1:{bare_port}/readyz"))
                healthd_rates.append(wrk(f"http://127.0.0.1:{healthd_port}/readyz"))
        finally:
            stop(bare)
            stop(daemon)
    b, h = statistics.median(bare_rates), statistics.median(healthd_rates)
    rows = [
        ["bare aiohttp handler, same bytes", f"{b:,.0f}", "1.00"],
        ["healthd cached /readyz (3 checks)", f"{h:,.0f}", f"{h / b:.2f}"],
    ]
    notes = (
        f"wrk -t1 -c{CONNECTIONS} -d{SECONDS}s with a kubelet's headers, server on core 0, "
        "wrk on core 1; "
        f"median of {ROUNDS} alternating rounds. Per-round ratios: "
        + ", ".join(f"{x / y:.2f}" for x, y in zip(healthd_rates, bare_rates, strict=True))
        + ". Goal: ratio >= 0.9."
    )
    write_table(
        "throughput", "Cached /readyz throughput", ["server", "req/s", "ratio"], rows, notes
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
