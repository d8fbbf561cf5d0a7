"""Background runs: one loop per `background` check, every `interval` with jitter.

Each loop asks the engine for a run (`run(name, deadline)`), which shares a run already
in flight for that check (a probe's `?fresh=1`, say) instead of starting a second one.
The loops are tasks the scheduler holds; `stop()` cancels and awaits every one.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

from healthd.checks.base import SpecBase
from healthd.deadline import Clock, Deadline

Sleep = Callable[[float], Awaitable[None]]
Run = Callable[[str, Deadline], Awaitable[object]]
JITTER = 0.1  # ± fraction of the interval between background runs
FIRST_RUN_SPREAD = 1.0  # at start, first runs spread over up to this many seconds


class Scheduler:
    def __init__(self, run: Run, clock: Clock, sleep: Sleep) -> None:
        self._run, self.clock, self.sleep = run, clock, sleep
        self._loops: dict[str, asyncio.Task[None]] = {}
        self.running = False  # started and not stopped

    def start(self, specs: list[SpecBase]) -> None:
        """Start a loop for each background check, their first runs spread out."""
        self.running = True
        for spec in specs:
            self.add(spec, jitter=True)

    def add(self, spec: SpecBase, jitter: bool = False) -> None:
        """Start `spec`'s loop (if it runs in the background and has none yet).

        Without `jitter` the first run is at once: a check added by a reload is what
        readiness waits on.
        """
        if self.running and spec.mode == "background" and spec.name not in self._loops:
            self._loops[spec.name] = asyncio.get_running_loop().create_task(
                self._loop(spec, jitter), name=f"check:{spec.name}"
            )

    async def remove(self, name: str) -> None:
        task = self._loops.pop(name, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def stop(self) -> None:
        """Cancel every loop and wait for them."""
        self.running = False
        tasks, self._loops = list(self._loops.values()), {}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _loop(self, spec: SpecBase, jitter: bool) -> None:
        if jitter and spec.spread_first_run:
            await self.sleep(random.uniform(0, min(spec.interval, FIRST_RUN_SPREAD)))  # noqa: S311
        while True:
            await self._run(spec.name, Deadline.after(spec.timeout, self.clock))
            await self.sleep(spec.interval * random.uniform(1 - JITTER, 1 + JITTER))  # noqa: S311
