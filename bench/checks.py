"""What one passing run of each check kind costs against the local servers.

Every run opens a new connection (DNS, TCP, auth, the protocol's handshake), which is
the price of proving the whole path each time. Median and p95 of RUNS runs each.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
from typing import Any

from _common import write_table

from healthd import runner
from healthd.checks.base import SpecBase
from healthd.config import parse_settings
from healthd.deadline import Deadline
from healthd.model import Outcome

RUNS = 50
CHECKS: list[dict[str, Any]] = [
    {"kind": "tcp", "address": "127.0.0.1:5432"},
    {"kind": "dns", "host": "localhost"},
    {"kind": "postgres", "dsn": "postgresql://postgres@127.0.0.1:5432/test"},
    {"kind": "mysql", "dsn": "mysql://root@127.0.0.1:3306/test"},
    {"kind": "redis", "url": "redis://127.0.0.1:6379/0"},
    {"kind": "amqp", "url": "amqp://guest:guest@127.0.0.1:5672/"},
    {"kind": "mqtt", "url": "mqtt://127.0.0.1:1883"},
    {"kind": "nats", "url": "nats://127.0.0.1:4222"},
    {"kind": "disk", "path": "/"},
    {"kind": "exec", "command": ["true"]},
]


async def measure(spec: SpecBase) -> list[float]:
    check = spec.build()
    times = []
    for _ in range(RUNS):
        result = await runner.run(spec, check, Deadline.after(5.0))
        if result.outcome is not Outcome.PASS:
            raise RuntimeError(f"{spec.kind}: {result.outcome}: {result.message}")
        times.append(result.duration * 1000)
    return times


async def main() -> int:
    import json

    text = json.dumps({"checks": [{"name": c["kind"], **c} for c in CHECKS]})
    settings = parse_settings(text)
    rows = []
    for spec in settings.checks:
        try:
            times = await measure(spec)
        except Exception as exc:  # a server that is down: say so in the table
            rows.append([spec.kind, "-", "-", f"not measured: {exc}"[:60]])
            continue
        p95 = statistics.quantiles(times, n=20)[-1]
        rows.append([spec.kind, f"{statistics.median(times):.2f}", f"{p95:.2f}", ""])
    write_table(
        "checks", "One passing run per kind (new connection each time)",
        ["kind", "median ms", "p95 ms", "note"], rows,
        f"{RUNS} sequential runs each against the local servers on loopback.",
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
