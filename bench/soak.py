"""Soak: every check kind run 10,000 times through a real `healthd run`, a third of the
runs refused or timing out, against the real local services (tests/soakrig.py).

    .venv/bin/python bench/soak.py [--runs 10000] [--grpc-refused]

Prints three tables (outcomes per kind, the daemon's fds/tasks/RSS over the run, each
server's connections from our checks before and after) and writes bench/results/soak.md.
Exit status 1 when a bound does not hold: fds at the end at most 2 above the fewest seen,
tasks at the end no more than the fewest seen, RSS growth over the second half under
16 MB, nothing in flight at the end, every server back to its baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
from pathlib import Path

from _common import RESULTS, write_table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.soakrig import PER_KIND, Soak, is_bad, soak

FD_SLACK, RSS_GROWTH_MB = 2, 16.0


def tables(report: Soak, runs: int) -> tuple[str, list[str]]:
    rows = []
    for kind, outcomes in report.outcomes.items():
        bad_names = [n for n in report.by_check if n.startswith(f"{kind}-") and is_bad(n)]
        bad_good = sum(report.by_check[n]["pass"] + report.by_check[n]["warn"] for n in bad_names)
        rows.append([kind, str(sum(outcomes.values()))]
                    + [str(outcomes[o]) for o in ("pass", "warn", "fail", "timeout")]
                    + [str(bad_good)])  # fmt: skip
    seconds = f"{report.seconds:.0f} s"
    first = write_table(
        "soak", f"Soak: {runs} runs of every kind ({report.rounds} fresh rounds, {seconds})",
        ["kind", "runs", "pass", "warn", "fail", "timeout", "bad checks passing"], rows,
        f"Each round is one GET /health?fresh=1 over {PER_KIND} checks of every kind: 4 good, "
        "1 refused, 1 timing out at 100ms (a silent listener, pg_sleep, SLEEP(), `sleep 5`, a "
        "full accept queue, a mute DNS server; disk and heartbeat fail, loop cannot).",
        write=False,
    )  # fmt: skip
    usage = [[str(u.round), str(u.fds), str(u.tasks), f"{u.rss_mb:.1f}"] for u in report.usage]
    second = write_table(
        "soak", "The daemon's resources (last row: 0.5 s after the last round)",
        ["round", "open fds", "tasks", "RSS MB"], usage,
        f"fds from /proc/<pid>/fd, RSS from VmRSS, tasks from the SIGUSR1 diagnostics line. "
        f"Bounds: fds at the end at most {FD_SLACK} above the fewest seen; tasks at the end "
        f"no more than the fewest seen; RSS growth over the second half under "
        f"{RSS_GROWTH_MB:g} MB.",
        write=False,
    )  # fmt: skip
    conns = [[name, str(base), str(end)] for name, (base, end) in report.connections.items()]
    third = write_table(
        "soak", "The servers' connections from our checks",
        ["server", "baseline", "after"], conns,
        "PostgreSQL pg_stat_activity (datname test, our application_name), MariaDB processlist "
        "(a throwaway user), Redis CLIENT LIST (our client name), RabbitMQ list_connections (a "
        "throwaway user; called at start and end only), NATS /connz of a private monitored "
        "nats-server. `after` is read once the last round's runs have ended.",
        write=False,
    )  # fmt: skip
    failures = []
    *during, end = report.usage
    half = during[len(during) // 2]
    if end.fds > min(u.fds for u in during) + FD_SLACK:
        failures.append(f"fds {min(u.fds for u in during)} -> {end.fds}")
    if end.tasks > min(u.tasks for u in during):
        failures.append(f"tasks {min(u.tasks for u in during)} -> {end.tasks}")
    if end.rss_mb - half.rss_mb >= RSS_GROWTH_MB:
        failures.append(f"RSS {half.rss_mb:.1f} -> {end.rss_mb:.1f} MB over the second half")
    if report.inflight_at_end:
        failures.append(f"in flight at the end: {report.inflight_at_end}")
    failures += [
        f"{n}: {b} -> {e} connections" for n, (b, e) in report.connections.items() if e != b
    ]
    failures += [
        f"{k} {o}" for k, o in report.by_check.items() if is_bad(k) and o["pass"] + o["warn"]
    ]
    return "\n".join([first, second, third]), failures


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000, help="runs of every kind")
    parser.add_argument(
        "--grpc-refused", action="store_true", help="the failing gRPC check on a refused port"
    )
    args = parser.parse_args()
    rounds = math.ceil(args.runs / PER_KIND)
    with tempfile.TemporaryDirectory(prefix="healthd-soak-") as directory:
        report = await soak(Path(directory), rounds, samples=10, grpc_hung=not args.grpc_refused)
    text, failures = tables(report, rounds * PER_KIND)
    RESULTS.mkdir(exist_ok=True)
    verdict = "All bounds held." if not failures else "Bounds broken: " + "; ".join(failures)
    (RESULTS / "soak.md").write_text(text + "\n" + verdict + "\n")
    print(verdict)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
