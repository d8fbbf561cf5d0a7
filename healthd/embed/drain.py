"""The embedded shells' stop order (reference §17), written once for every framework:

    signal ─▶ draining (readiness 503; every answer says `Connection: close`)
           ─▶ drain_delay ─▶ keep accepting until no request for `shutdown.quiet` (≤ grace)
           ─▶ stop accepting ─▶ in flight get `grace` ─▶ cut (and name) the rest
           ─▶ cleanup hooks, last registered first ─▶ the server's own close (checks stop)
           ─▶ the exit line

`shutdown.deadline` (from the signal) bounds every step; a second signal skips what is
left of the current wait. What differs between frameworks is behind `Server`: how to stop
accepting, how to close, and whose requests `traffic` counts (aiohttp.py; an ASGI
server's adapter fills in the same three).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from healthd.durations import human_duration
from healthd.embed.traffic import NAMED, Request, Traffic, pause
from healthd.errors import ConfigError
from healthd.health import Health
from healthd.hooks import HookReport

log = logging.getLogger("healthd")
REAP = 1.0  # seconds the requests cut at the end of grace get to unwind
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Server(Protocol):
    """What the drain steers in the framework's server."""

    @property
    def traffic(self) -> Traffic: ...

    def closing(self) -> None: ...  # from now on every answer closes its connection

    async def stop_accepting(self, until: float) -> None: ...  # listeners closed, idle too

    async def close(self) -> None: ...  # release the rest (after the hooks): checks stop


class Signals:
    """SIGTERM/SIGINT: the first starts the stop, each later one skips the current wait."""

    def __init__(self) -> None:
        self.reason = ""
        self.requested = asyncio.Event()
        self.skip = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        for sig in SIGNALS:
            loop.add_signal_handler(sig, self.received, sig.name)

    def remove(self) -> None:
        if self._loop is not None:
            for sig in SIGNALS:
                self._loop.remove_signal_handler(sig)
            self._loop = None

    def received(self, name: str) -> None:
        if not self.requested.is_set():
            self.reason = name
            self.requested.set()
            return
        log.warning("second %s: skipping what is left of the current wait", name)
        self.skip.set()


@dataclass(slots=True)
class Summary:
    """What the stop did, for the exit line."""

    reason: str
    draining: float = 0.0  # signal → stop accepting
    quiet_after: float | None = None  # drain_delay → the traffic went quiet (None: it did not)
    skipped: list[str] = field(default_factory=list)  # the waits a second signal cut
    drained: int = 0  # requests answered from the signal on
    drain_took: float = 0.0  # stop accepting → nothing left in flight (or the cut)
    cut: list[Request] = field(default_factory=list)
    hooks: list[HookReport] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)  # tasks still pending at the end
    code: int = 0

    def line(self) -> str:
        """`exit: SIGTERM; draining 5.00 s; traffic quiet after 0.50 s; requests drained 312
        in 0.41 s (0 cut); hooks db.close 0.02 s, kafka.flush 5.00 s (timed out); code 0`"""
        skipped = f" (cut short: {', '.join(self.skipped)})" if self.skipped else ""
        quiet = (
            f"traffic quiet after {self.quiet_after:.2f} s"
            if self.quiet_after is not None
            else "traffic still arriving at the stop"
        )
        cut = f"{len(self.cut)} cut"
        if self.cut:
            named = ", ".join(r.describe() for r in self.cut[:NAMED])
            more = f", +{len(self.cut) - NAMED} more" if len(self.cut) > NAMED else ""
            cut += f": {named}{more}"
        parts = [
            f"exit: {self.reason}",
            f"draining {self.draining:.2f} s{skipped}",
            quiet,
            f"requests drained {self.drained} in {self.drain_took:.2f} s ({cut})",
            "hooks " + (", ".join(h.describe() for h in self.hooks) or "none"),
        ]
        if self.tasks:
            parts.append(f"tasks left {len(self.tasks)}: {', '.join(self.tasks[:NAMED])}")
        return "; ".join([*parts, f"code {self.code}"])

    def fields(self) -> dict[str, Any]:
        """The same facts for a JSON log line (`event: exit`, `exit: {...}`)."""
        return {
            "reason": self.reason,
            "draining_s": round(self.draining, 3),
            "skipped": self.skipped or None,
            "quiet_after_s": None if self.quiet_after is None else round(self.quiet_after, 3),
            "requests_drained": self.drained,
            "drain_s": round(self.drain_took, 3),
            "requests_cut": [r.describe() for r in self.cut[:NAMED]],
            "requests_cut_count": len(self.cut),
            "hooks": [
                {"name": h.name, "took_s": round(h.took, 3), "outcome": h.outcome}
                for h in self.hooks
            ],
            "tasks_left": self.tasks[:NAMED],
            "code": self.code,
        }


async def drain(health: Health, server: Server, signals: Signals) -> Summary:
    """Run the stop order (module docstring) after the first signal; the summary."""
    cfg = health.settings.shutdown
    clock, traffic, skip = time.monotonic, server.traffic, signals.skip
    started = clock()
    end = started + cfg.deadline  # the overall deadline wins over every step
    finished_before = traffic.finished
    summary = Summary(signals.reason or "stop")
    health.drain()
    server.closing()
    log.info(
        "%s: draining (readiness fails; the app keeps serving %s)",
        summary.reason, human_duration(cfg.drain_delay),
    )  # fmt: skip
    if await pause(min(started + cfg.drain_delay, end) - clock(), skip):
        summary.skipped.append("drain_delay")
    delayed = clock()
    went = await traffic.quiet(cfg.quiet, min(delayed + cfg.grace, end), skip)
    if went == "done":
        summary.quiet_after = clock() - delayed
    elif went == "skipped":
        summary.skipped.append("quiet")
    stopping = clock()
    await server.stop_accepting(min(stopping + cfg.grace, end))
    summary.draining = clock() - started
    log.info(
        "stopped accepting; %d requests in flight get up to %s",
        len(traffic.requests), human_duration(cfg.grace),
    )  # fmt: skip
    # grace counts from the stop of accepting: in flight get exactly that (or the deadline)
    if await traffic.drained(min(stopping + cfg.grace, end), skip) == "skipped":
        summary.skipped.append("grace")
    summary.drain_took = clock() - stopping
    summary.cut = traffic.cut()
    for request in summary.cut:
        log.warning(
            "grace over: cutting %s after %s",
            request.describe(), human_duration(clock() - request.since),
        )  # fmt: skip
    if summary.cut:
        await traffic.reaped(min(clock() + REAP, end))
    summary.drained = traffic.finished - finished_before
    summary.hooks = await health.hooks.run(end, skip)
    await server.close()
    summary.tasks = pending(asyncio.all_tasks())
    return summary


def pending(tasks: Iterable[asyncio.Task[Any]]) -> list[str]:
    """The tasks left besides the current one, by name and coroutine."""
    current = asyncio.current_task()
    left = []
    for task in tasks:
        if task is current or task.done():
            continue
        coro = task.get_coro()
        what = getattr(coro, "__qualname__", type(coro).__name__)
        left.append(f"{task.get_name()} ({what})")
    return sorted(left)


def run(health: Health, serving: Coroutine[Any, Any, Summary]) -> None:
    """A shell's script entry: logging from `health.settings.logging` unless the root logger
    has handlers already, `serving` run to its end; a bad start (ConfigError) is one line on
    stderr and exit code 2, a summary's non-zero code the process's."""
    if not logging.getLogger().handlers:
        from healthd.observers.log import configure

        configure(health.settings.logging)
    try:
        summary = asyncio.run(serving)
    except ConfigError as exc:
        print(f"healthd: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if summary.code:
        raise SystemExit(summary.code)


def report(summary: Summary) -> None:
    """Log the exit line (JSON logging carries its fields too)."""
    log.info("%s", summary.line(), extra={"fields": {"event": "exit", "exit": summary.fields()}})
