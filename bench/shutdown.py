"""The seed's exit test: N keep-alive connections hammer /readyz and /livez, SIGTERM mid-run.

A real `healthd run` and N raw-asyncio-stream clients (a task and its own keep-alive
connection each, every answer read), judged against the close time the daemon logs
(`listeners closed at <UTC ISO>`, else the line's arrival): a request written before
close - 2 ms with no answer is a drop (must be 0). A `p` run SIGSTOPs the daemon 50 ms
before its drain_delay runs out and SIGCONTs it 100 ms later (a process of its own sends
the signals and times the exit). NOTES says what each column means. About 7 s a run.

    .venv/bin/python bench/shutdown.py [N[p] ...] [--tree DIR]   # default: 1000 1000p 100 100p
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import resource
import signal
import socket
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _common as common

DRAIN, GRACE, LOAD, SLEEP, PAUSE = 2.0, 3.0, 1.5, 1.5, 0.1
GATE, READ_TIMEOUT, CONNECT_TIMEOUT, MARGIN, NOFILE = 100, 10.0, 5.0, 0.002, 20000
SYN_RETRY = 0.9  # Linux retransmits a SYN after 1 s: a connect this slow had one dropped
CONFIG = f"""
server: {{listen: "127.0.0.1:{{port}}"}}
shutdown: {{drain_delay: {DRAIN}s, grace: {GRACE}s}}
groups: {{readiness: {{exclude: [slow]}}}}
checks:
  - {{name: loop, kind: loop, interval: 2s, timeout: 1500ms}}
  - {{name: sink, kind: tcp, address: "127.0.0.1:{{sink}}", interval: 1s, timeout: 500ms}}
  - {{name: slow, kind: exec, command: [/bin/sleep, "{SLEEP}"], mode: on_demand,
      critical: false, interval: 10s, timeout: 2500ms}}
"""
CLOSED = re.compile(r"listeners closed(?: at (\S+?))?;")
Request = tuple[float, float, str, bytes, float]  # sent, answered/failed, outcome, path, opened


@dataclass(slots=True)
class Tally:
    """Every request (its outcome a status, or the error) and every failed connect."""

    requests: list[Request] = field(default_factory=list)
    connects: list[tuple[float, str]] = field(default_factory=list)  # begun, kind
    slow_connects: int = 0  # took >= SYN_RETRY: a SYN was dropped and sent again


async def client(port: int, gate: asyncio.Semaphore, stop: asyncio.Event, tally: Tally) -> None:
    """One connection at a time, one request at a time, every answer read; reconnects when
    the daemon closes. `sent` is stamped after the write (the bytes are in the kernel by then):
    a late stamp can only excuse the daemon, never accuse it."""
    paths, n, pending, opened, path = (b"/readyz", b"/livez"), 0, 0.0, 0.0, b""
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    try:
        while not stop.is_set():
            held = conn is None
            if conn is None:
                await gate.acquire()
                begun = time.time()
                try:  # asyncio.timeout, not wait_for: the SYN goes out in this very step
                    async with asyncio.timeout(CONNECT_TIMEOUT):
                        conn = await asyncio.open_connection("127.0.0.1", port)
                except (OSError, TimeoutError) as exc:
                    gate.release()
                    tally.slow_connects += time.time() - begun >= SYN_RETRY
                    kind = "refused" if isinstance(exc, ConnectionRefusedError) else "connect"
                    tally.connects.append((begun, f"{kind} {type(exc).__name__}"))
                    await asyncio.sleep(0.1)
                    continue
                opened = time.time()
                tally.slow_connects += opened - begun >= SYN_RETRY
            reader, writer = conn
            path, n = paths[n % 2], n + 1
            writer.write(b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            sent = pending = time.time()
            try:
                async with asyncio.timeout(READ_TIMEOUT):
                    status, close = await common.read_answer(reader)
                outcome = str(status)
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
                close, outcome = True, "eof" if isinstance(exc, EOFError) else type(exc).__name__
            finally:
                pending = 0.0
                if held:
                    gate.release()
            tally.requests.append((sent, time.time(), outcome, path, opened))
            if close:
                writer.close()
                conn = None
    except asyncio.CancelledError:
        if pending:
            tally.requests.append((pending, time.time(), "pending at stop", path, opened))
        raise
    finally:
        if conn is not None:
            conn[1].close()


class Daemon(common.LoggedProcess):
    """`healthd run` on a free port, with the fd limit raised, from this tree or `tree`."""

    def __init__(self, directory: Path, sink: int, tree: Path | None) -> None:
        super().__init__()
        self.port, self.tree = common.free_port(), tree
        self.config = directory / "healthd.yaml"
        self.config.write_text(
            CONFIG.replace("{port}", str(self.port)).replace("{sink}", str(sink))
        )

    async def run(self) -> int:
        def nofile() -> None:  # in the child, before exec
            resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))

        env = {**os.environ, "PYTHONPATH": str(self.tree)} if self.tree else None
        argv = [sys.executable, "-m", "healthd", "run", "-c", str(self.config)]
        proc = await self.start(argv, preexec_fn=nofile, cwd=self.tree, env=env)
        await self.line("listening on", 15)
        return proc.pid

    async def snapshot(self) -> tuple[int, int, int]:
        """fds (read as SIGUSR1 goes out), tasks and requests in flight (`diagnostics:`)."""
        assert self.proc is not None
        mark = len(self.lines)
        self.proc.send_signal(signal.SIGUSR1)
        fds = common.fd_census(self.proc.pid)["total"]
        _, line = await self.line("diagnostics: ", 5, after=mark)
        dump = json.loads(line.split("diagnostics: ", 1)[1])
        return fds, int(dump["tasks"]), len(dump["requests_in_flight"])


async def run(n: int, paused: bool, directory: Path, tree: Path | None) -> dict[str, str]:
    # The tcp check's target: a listener nobody accepts on (the kernel completes the
    # handshakes), so a busy benchmark loop cannot fail the check.
    sink = socket.create_server(("127.0.0.1", 0), backlog=1024)
    daemon = Daemon(directory, sink.getsockname()[1], tree)
    stop, tally, gate = asyncio.Event(), Tally(), asyncio.Semaphore(GATE)
    tasks: list[asyncio.Task[None]] = []
    seen: dict[str, Any] = {"paused": paused}
    signals: asyncio.subprocess.Process | None = None
    try:
        pid = await daemon.run()
        for _ in range(100):
            if (await common.http_get(daemon.port, "/readyz"))[2] == 200:
                break
            await asyncio.sleep(0.05)
        seen["backlog"] = common.listen_backlog(daemon.port)
        seen["idle"] = await daemon.snapshot()
        tasks = [asyncio.create_task(client(daemon.port, gate, stop, tally)) for _ in range(n)]
        for _ in range(400):  # every connection open and answered, within 20 s
            if len(tally.requests) >= 2 * n:
                break
            await asyncio.sleep(0.05)
        counters, loaded, mark = common.listen_counters(), time.time(), len(tally.requests)
        await asyncio.sleep(LOAD)
        seen["rate"] = (len(tally.requests) - mark) / (time.time() - loaded)
        signals = await common.signaller(pid, time.time() + 0.3, PAUSE)
        assert signals.stdin is not None
        seen["draining"] = logged_at((await daemon.line(": draining", 10))[1])
        drain_end = seen["draining"] + DRAIN  # when the daemon's drain_delay runs out
        signals.stdin.write(f"{drain_end - PAUSE / 2!r}\n".encode() if paused else b"\n")
        await asyncio.sleep(drain_end - 0.5 - time.time())
        slow = asyncio.create_task(common.http_get(daemon.port, "/health?fresh=1&timeout=5s"))
        seen["close"] = await daemon.line("listeners closed", DRAIN + 10)
        await asyncio.sleep(0.2)
        # SIGUSR1 only while /health holds grace open: once the daemon is past grace its
        # handlers are gone and SIGUSR1 would kill it (the default action).
        try:
            seen["grace"] = (-1, -1, -1) if slow.done() else await daemon.snapshot()
        except (OSError, RuntimeError):
            seen["grace"] = (-1, -1, -1)
        assert daemon.proc is not None
        seen["code"] = await asyncio.wait_for(daemon.proc.wait(), GRACE + 10)
        out, _ = await asyncio.wait_for(signals.communicate(), 10)
        seen["signals"] = {k: float(v) for k, v in (x.split() for x in out.decode().splitlines())}
        await asyncio.sleep(0.2)
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        seen["slow"] = await slow
        seen["overflows"] = (
            common.listen_counters()["ListenOverflows"] - counters["ListenOverflows"]
        )
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await daemon.kill()
        if signals is not None and signals.returncode is None:
            signals.kill()
            await signals.wait()
        sink.close()
    seen["log"] = [x[:200] for _, x in daemon.lines if "diagnostics:" not in x]
    seen["summary"] = next((logged_at(x) for x in seen["log"] if "healthd exited" in x), 0.0)
    return judge(n, tally, seen)


def logged_at(line: str) -> float:
    """The wall time of a text-format log line (`2026-12-02 03:39:10,006 INFO ...`, local)."""
    stamp, _, millis = line[:23].partition(",")
    return time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + int(millis) / 1000


def judge(n: int, tally: Tally, seen: dict[str, Any]) -> dict[str, str]:
    """The row of the table (and a detail line on stdout) from what one run saw."""
    arrived, line = seen["close"]
    found = CLOSED.search(line)
    logged = found is not None and found.group(1) is not None
    close = dt.datetime.fromisoformat(found.group(1)).timestamp() if found and logged else arrived
    sig = seen["signals"]
    cutoff, term, end = close - MARGIN, sig["TERM"], sig.get("EXIT")
    answered = [r for r in tally.requests if r[2].isdigit()]
    failed = [r for r in tally.requests if not r[2].isdigit()]
    dropped = [r for r in failed if r[0] < cutoff]

    def ms(t: float) -> float:
        return round((t - close) * 1000, 1)

    after = Counter(f"{kind} after the close" for sent, _, kind, _, _ in failed if sent >= cutoff)
    refused = Counter(kind for begun, kind in tally.connects if begun >= cutoff)
    early = Counter(
        f"{kind} begun before close" for begun, kind in tally.connects if begun < cutoff
    )
    slow_status = seen["slow"][2]
    other = after + early + Counter({"in-grace /health": 1} if slow_status is None else {})
    firsts = [got for sent, got, kind, path, _ in answered
              if sent >= term and path == b"/readyz" and kind == "503"]  # fmt: skip
    (idle_fds, idle_tasks, _), (fds, tasks, inflight) = seen["idle"], seen["grace"]
    detail = {
        "run": f"{n}{'p' if seen['paused'] else ''}", "close line": line.split(" ", 3)[-1],
        "close line arrived ms": ms(arrived),
        "unanswered (kind, sent, failed, opened; ms from close)":
            [(k, ms(s), ms(g), ms(o)) for s, g, k, _, o in dropped][:30],
        "failed after close (same)":
            [(k, ms(s), ms(g), ms(o)) for s, g, k, _, o in failed if s >= cutoff][:30],
        "refused": refused, "other": other, "in-grace /health (status, answered ms)":
            (slow_status, ms(seen["slow"][1])), "in flight at the grace snapshot": inflight,
        "signals ms from close": {k: ms(v) for k, v in seen["signals"].items()},
        "namespace ListenOverflows during the run": seen["overflows"], "log": seen["log"][:40],
    }  # fmt: skip
    print(json.dumps(detail), flush=True)
    return {
        "conns": str(n),
        "pause vs drain end ms": "/".join(
            f"{(sig[k] - seen['draining'] - DRAIN) * 1000:+.0f}" for k in ("STOP", "CONT")
        )
        if "STOP" in sig
        else "-",
        "req/s": f"{seen['rate']:.0f}",
        "sent open": str(sum(1 for r in tally.requests if r[0] < cutoff)),
        "unanswered": str(len(dropped)),
        "answered after close": str(
            sum(1 for sent, got, *_ in answered if sent < cutoff and got > close)
        ),
        "refused after": str(sum(refused.values())),
        "other errors": ", ".join(f"{k} {v}" for k, v in other.items()) or "0",
        "/readyz non-200 before TERM": str(
            sum(1 for _, g, k, p, _ in answered if g < term and p == b"/readyz" and k != "200")
        ),
        "/livez non-200": str(
            sum(1 for _, _, k, p, _ in answered if p == b"/livez" and k != "200")
        ),
        "TERM→draining ms": f"{max(0.0, seen['draining'] - term) * 1000:.0f}",  # log: whole ms
        "TERM→503 ms": f"{(min(firsts) - term) * 1000:.1f}" if firsts else "never",
        "exit": str(seen["code"]),
        "TERM→exit s": f"{end - term:.2f}" if end else "?",
        "summary→exit ms": f"{(end - seen['summary']) * 1000:.0f}" if end else "?",
        "fds idle→grace": f"{idle_fds}→{fds}" if fds >= 0 else f"{idle_fds}→(no grace)",
        "tasks idle→grace": f"{idle_tasks}→{tasks}" if tasks >= 0 else f"{idle_tasks}→(no grace)",
        "backlog": str(seen["backlog"]),
        "connects ≥0.9 s": str(tally.slow_connects),
        "close time": "logged" if logged else "line arrival",
    }


NOTES = f"""\
One `healthd run` (loop, tcp and an on-demand exec check) on loopback; drain_delay {DRAIN}s,
grace {GRACE}s; {LOAD}s of load before SIGTERM; clients, daemon and the signalling process
share the machine. Each connection is a task with its own keep-alive connection (raw asyncio
streams) alternating `/readyz` and `/livez`; at most {GATE} new connections wait for their
first answer at once. `sent open`: requests written before the logged close time - 2 ms
(stamped after the write); `unanswered`: of those, how many got no answer (must be 0);
`answered after close`: of those, answered after the close (grace at work); `refused after`:
connects refused after the close (expected); `other errors`: requests written after the close
that got no answer, connects begun before the close that failed, a failed in-grace `/health`.
`pause vs drain end`: SIGSTOP and SIGCONT ({PAUSE * 1000:.0f} ms apart) relative to the moment
the daemon's drain_delay ran out (its logged `draining` time + drain_delay), so the close falls
in the pause. `TERM→draining`: the daemon's `draining` log line (ms) after the signal went out;
`TERM→503`: the first 503 on /readyz to a request sent after SIGTERM, as the client read it.
`summary→exit`: from the daemon's `healthd exited` log line to the process's exit.
`TERM→exit` (pidfd) includes the ~1 s one `/health?fresh=1` request (an exec check sleeping
{SLEEP}s, sent 0.5 s before the close) holds grace open, so that fds (/proc/<pid>/fd) and
tasks (SIGUSR1 `diagnostics:`) can be read in grace, 200 ms after the close; `idle` is before
the load. `backlog`: the probe listener's accept-queue limit (`ss`); `connects ≥0.9 s`:
connects that took as long as a SYN retransmission (a SYN dropped by a full listen queue, or
a client loop that late: 0 rules out both), counted by the clients (the kernel's
ListenOverflows counts the whole namespace, where other processes overflow theirs: it is in
the detail line only)."""


async def main(runs: list[tuple[int, bool]], tree: Path | None) -> int:
    common.raise_nofile(NOFILE)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, paused in runs:
            rows.append(await run(n, paused, Path(tmp), tree))
    header = list(rows[0])
    title = "Exit under load (bench/shutdown.py)" + (f", healthd from {tree}" if tree else "")
    table = [[r[h] for h in header] for r in rows]
    common.write_table("shutdown", title, header, table, NOTES, write=tree is None)
    return 1 if any(r["unanswered"] != "0" for r in rows) else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument(
        "runs", nargs="*", default=["1000", "1000p", "100", "100p"],
        help="connections per run; a trailing p pauses the daemon around the close",
    )  # fmt: skip
    parser.add_argument(
        "--tree", type=Path, help="run healthd from this source tree (e.g. a `git archive` "
        "of an older commit) to compare; the table is printed, not written",
    )  # fmt: skip
    args = parser.parse_args()
    runs = [(int(a.rstrip("p")), a.endswith("p")) for a in args.runs]
    sys.exit(asyncio.run(main(runs, args.tree.resolve() if args.tree else None)))
