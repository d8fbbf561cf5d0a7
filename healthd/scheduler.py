"""Background runs: each `background` check runs every `interval` (± jitter).

No task per check: a check waits for its next run as one timer on the event loop
(`loop.call_later`), and its timer is set again when its run ends. A run is asked of
`start(name, deadline)` (runs.Runs), which shares a run already in flight for that
check (a probe's `?fresh=1`, say) instead of starting a second one. Background runs
use the check's own `timeout` as their deadline (reference §3).

The delay after each run is asked of `delay(spec)` (evaluator.next_delay: the fast and
down intervals); jitter is applied here, to whatever it says.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable
from typing import Any

from healthd.checks.base import SpecBase
from healthd.deadline import Clock, Deadline

Start = Callable[[str, Deadline, bool], "asyncio.Future[Any]"]
Delay = Callable[[SpecBase], float]
JITTER = 0.1  # ± fraction of the interval between background runs
FIRST_RUN_SPREAD = 1.0  # at start, first runs spread over up to this many seconds
TICK = 0.01  # due times are rounded up to this: one loop wake-up starts every run due in it


class Scheduler:
    def __init__(self, start: Start, clock: Clock, delay: Delay | None = None) -> None:
        self._start, self.clock = start, clock
        self.delay: Delay = delay or (lambda spec: spec.interval)
        self._specs: dict[str, SpecBase] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self.running = False  # started and not stopped

    def start(self, specs: list[SpecBase]) -> None:
        """Schedule each background check, their first runs spread out."""
        self.running = True
        for spec in specs:
            self.add(spec, jitter=True)

    def add(self, spec: SpecBase, jitter: bool = False) -> None:
        """Schedule `spec` (if it runs in the background and is not scheduled yet).

        Without `jitter` the first run is at once: a check added by a reload is what
        readiness waits on.
        """
        if self.running and spec.mode == "background" and spec.name not in self._specs:
            self._specs[spec.name] = spec
            spread = jitter and spec.spread_first_run  # (a `loop` check runs at once)
            first = random.uniform(0, min(spec.interval, FIRST_RUN_SPREAD)) if spread else 0.0  # noqa: S311
            self._arm(spec, first)

    def due(self, name: str) -> float | None:
        """When `name` runs next (loop time), or None while it runs or is not scheduled."""
        timer = self._timers.get(name)
        return timer.when() if timer is not None else None

    def remove(self, name: str) -> None:
        """Stop scheduling `name` (a run in flight finishes; runs.Runs owns it)."""
        self._specs.pop(name, None)
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def stop(self) -> None:
        """Cancel every timer; nothing is scheduled after this."""
        self.running = False
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._specs.clear()

    def _arm(self, spec: SpecBase, delay: float) -> None:
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        if delay > 0:  # runs due in one tick start together (a run meant "at once" is not held)
            when = math.ceil(when / TICK) * TICK
        self._timers[spec.name] = loop.call_at(when, self._due, spec)

    def _due(self, spec: SpecBase) -> None:
        if self._specs.get(spec.name) is not spec:
            return  # removed (or replaced by a reload) since the timer was set
        del self._timers[spec.name]
        run = self._start(spec.name, Deadline.after(spec.timeout, self.clock), True)
        run.add_done_callback(lambda _: self._done(spec))

    def _done(self, spec: SpecBase) -> None:
        if self.running and self._specs.get(spec.name) is spec and spec.name not in self._timers:
            self._arm(spec, self.delay(spec) * random.uniform(1 - JITTER, 1 + JITTER))  # noqa: S311
