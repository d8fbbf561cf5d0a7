"""The seed's stress test through a real load balancer (reference §16): two pods behind
HAProxy, wrk at 1,000 connections, one pod terminated mid-run, naive, supervised and
embedded in the same run (tests/podrig.py has the rig).

    naive       the app and its healthd sidecar get SIGTERM at the same instant (the kubelet,
                no preStop): the app closes its listener before HAProxy has seen /readyz fail
    supervised  `healthd run -- app`: healthd gets SIGTERM, fails /readyz at once, stops the
                app after drain_delay; HAProxy has moved the traffic by then
    embedded    one process, healthd inside the app (healthd.aiohttp.run_app); HAProxy
                health-checks the app's own /readyz (reference §17)

About a minute. Loopback only; a shared machine makes the request counts noisy, not the
failures.

    .venv/bin/python bench/pod_shutdown.py [--connections 1000] [--duration 10] [--stop-at 3]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from _common import raise_nofile, write_table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.haproxy import NOFILE
from tests.podrig import CHECK, MODES, Result, run

NOTES = """\
Each row: two pods (an aiohttp app + healthd) behind HAProxy 2.6, which health-checks
each pod through its healthd's `/readyz` (embedded: the app's own; `{check}`); wrk
(`-t{threads} -c{connections} -d{duration:g}s --timeout 5s`) through HAProxy; pod 1 terminated
{stop_at:g} s in. `failed` = non-2xx answers + socket errors (connect/read/write/timeout).
`exit` = pod 1's exit codes; `stopped in` = from its SIGTERM until its last process was
gone (supervised: drain_delay {drain:g} s, then the app's own stop; embedded: drain_delay,
then quiet, then grace). The last row is the steady state: the embedded pods, nobody
stopped. Request counts move with the machine's load (it is shared); the failures are the
figure."""


def row(result: Result) -> list[str]:
    errors = result.errors
    socket_errors = "/".join(str(errors[k]) for k in ("connect", "read", "write", "timeout"))
    share = 100 * result.failed / result.requests if result.requests else 0.0
    codes = ", ".join(f"{name} {code}" for name, code in result.codes.items()) or "-"
    return [
        result.mode, f"{result.connections:,}", f"{result.requests:,}", f"{result.non2xx:,}",
        socket_errors, f"{result.failed:,}", f"{share:.2f} %", codes,
        f"{result.stopped_s:.2f} s" if result.codes else "-",
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--stop-at", type=float, default=3.0)
    parser.add_argument("--drain", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if shutil.which("wrk") is None or not Path(haproxy).exists():
        print("pod_shutdown: needs haproxy and wrk (make bench installs them)", file=sys.stderr)
        return 1
    raise_nofile(NOFILE)
    results = []
    with tempfile.TemporaryDirectory(prefix="pod-shutdown-") as tmp:
        for mode in MODES:
            result = run(
                mode, Path(tmp) / mode, connections=args.connections, duration=args.duration,
                stop_at=args.stop_at, drain=args.drain, threads=args.threads, haproxy=haproxy,
            )  # fmt: skip
            results.append(result)
            print(f"{mode}: {result.failed} failed of {result.requests}", file=sys.stderr)
        # The steady state: the same embedded pods, nobody stopped; wrk's timeout counts
        # none of their tail latency as an error, so a stop's failures are the stop's own.
        steady = run(
            "embedded", Path(tmp) / "steady", connections=args.connections,
            duration=args.duration, stop_at=None, drain=args.drain, threads=args.threads,
            haproxy=haproxy,
        )  # fmt: skip
        steady.mode = "embedded, nobody stopped"
        results.append(steady)
        print(f"steady: {steady.failed} failed of {steady.requests}", file=sys.stderr)
    header = ["mode", "connections", "requests", "non-2xx", "socket errors c/r/w/t", "failed",
              "failed share", "exit", "stopped in"]  # fmt: skip
    notes = NOTES.format(
        check=CHECK, threads=args.threads, connections=args.connections,
        duration=args.duration, stop_at=args.stop_at, drain=args.drain,
    )  # fmt: skip
    write_table(
        "pod_shutdown", "A pod terminated under load, through HAProxy (reference §16)", header,
        [row(r) for r in results], notes, write=not args.no_write,
    )  # fmt: skip
    by_mode = {r.mode: r for r in results}
    supervised, embedded = by_mode["supervised"], by_mode["embedded"]
    good = supervised.failed == 0 and supervised.codes == {"healthd": 0}
    good = good and embedded.failed == 0 and embedded.codes == {"app": 0}
    return 0 if good and steady.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
