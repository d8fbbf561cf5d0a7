"""The engine: one Settings wired into a store, its runs and their scheduler.

    Settings ─▶ specs ─build(context)─▶ checks ─▶ Runs ─▶ runner ─▶ Store.record ─▶ views
                                                   ▲
                                        Scheduler ─┘  (background timers)

It owns nothing the views read: they read `engine.store` (states, snapshots) and ask
`engine.runs` for evaluations. What it does own is the order of start-up, reload and
stop, and the `Context` checks are built with (the daemon's lag monitor, the store's
heartbeats, the clock).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from opentelemetry.trace import Tracer

from healthd import dependencies
from healthd.checks.base import Check, Context, SpecBase
from healthd.config import Settings
from healthd.deadline import Clock, Deadline
from healthd.evaluator import next_delay
from healthd.events import Observer
from healthd.lag import LagMonitor
from healthd.model import CheckResult, Snapshot
from healthd.runs import Runs
from healthd.scheduler import Scheduler
from healthd.store import Store

HELD_LIMIT = 2.0  # seconds stop() waits for clean-ups runs left going (exec's TERM → KILL)

Build = Callable[[SpecBase, Context], Check]


class Engine:
    """Runs checks and answers `evaluate(group, deadline)`; one per daemon."""

    def __init__(
        self,
        settings: Settings,
        *,
        observers: Sequence[Observer] = (),
        tracer: Tracer | None = None,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
        lag: LagMonitor | None = None,
        build: Build | None = None,
    ) -> None:
        self.settings = settings
        self.build = build or _build  # tests inject FakeChecks here
        self.lag = lag or LagMonitor()
        self.clock = clock
        self.store = Store(clock, wall, observers, history=settings.history)
        self.context = Context(self.lag, self.store, clock)
        self.runs = Runs(self.store, tracer=tracer, clock=clock, wall=wall)
        self.scheduler = Scheduler(self.runs.start, clock, self._next_delay)
        self._configure(settings)

    def _configure(self, settings: Settings) -> set[str]:
        kept = self.store.configure(
            settings.all_checks, settings.membership(), history=settings.history
        )
        old = self.runs.checks
        self.runs.checks = {
            s.name: old[s.name] if s.name in kept else self.build(s, self.context)
            for s in self.store.specs()
        }
        self.runs.dependents = dependencies.dependents(self.store.specs())
        self.settings = settings
        return kept

    def _next_delay(self, spec: SpecBase) -> float:
        state = self.store.check(spec.name)
        return next_delay(spec, state) if state is not None else spec.interval

    async def reload(self, settings: Settings) -> tuple[list[str], list[str], list[str]]:
        """Apply new settings; unchanged checks keep state. Returns (added, removed, changed)."""
        before = {s.name for s in self.store.specs()}
        kept = self._configure(settings)
        now = [s.name for s in self.store.specs()]
        added = [n for n in now if n not in before]
        removed = [n for n in before if n not in self.runs.checks]
        changed = [n for n in now if n in before and n not in kept]
        for name in removed + changed:
            self.scheduler.remove(name)
        for name in added + changed:
            spec = self.store.spec(name)
            assert spec is not None
            self.scheduler.add(spec)
        return added, removed, changed

    @property
    def draining(self) -> bool:
        return self.store.draining

    def set_draining(self, draining: bool) -> None:
        self.store.set_draining(draining)

    def spec(self, name: str) -> SpecBase | None:
        return self.store.spec(name)

    def start(self) -> None:
        """Schedule every `background` check."""
        self.scheduler.start(self.store.specs())
        self.runs.waking = True  # a recovered parent runs its skipped children at once

    async def stop(self) -> None:
        """Stop scheduling, cancel the runs in flight and wait for them, stop the lag monitor."""
        self.scheduler.stop()
        self.runs.waking = False
        await self.runs.stop()
        if self.context.held:  # what cancelled runs left going (exec: TERM → KILL, reap)
            await asyncio.wait(self.context.held, timeout=HELD_LIMIT)
        await self.lag.stop()

    async def run_now(self, name: str) -> CheckResult:
        """Run `name` now within its own timeout and record the result (a posted heartbeat)."""
        spec = self.store.spec(name)
        assert spec is not None, name
        return await self.runs.join(name, Deadline.after(spec.timeout, self.clock))

    async def evaluate(
        self,
        group: str,
        deadline: Deadline,
        *,
        fresh: bool = False,
        exclude: Sequence[str] = (),
        only: str | None = None,
    ) -> Snapshot:
        """The group's snapshot after running `on_demand` checks (all if `fresh`)."""
        evaluation = await self.runs.evaluate(
            group, deadline, fresh=fresh, exclude=exclude, only=only
        )
        return evaluation.snapshot(self.store)


def _build(spec: SpecBase, context: Context) -> Check:
    spec.preload()  # here, at start-up or reload, not inside a run on the event loop
    return spec.build(context)
