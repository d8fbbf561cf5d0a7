"""Event-loop lag: a sampler the daemon makes, the `loop` check and the metrics read.

One `LagMonitor` per daemon (never a module-level one): it sleeps `PERIOD` at a time
and records how late it woke. `last` is the latest lag (the `healthd_event_loop_lag_seconds`
gauge); `take_worst()` hands the worst lag since the previous call to the `loop` check.
"""

from __future__ import annotations

import asyncio

PERIOD = 0.05


class LagMonitor:
    """Measures event-loop lag; started by the daemon, or lazily by the first `loop` run."""

    def __init__(self) -> None:
        self.last = 0.0
        self._worst = 0.0
        self._task: asyncio.Task[None] | None = None

    def ensure_running(self) -> None:
        """Start the sampler on the running loop unless it runs there already."""
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._sample(), name="loop-lag")

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(PERIOD)
            self.last = max(0.0, loop.time() - before - PERIOD)
            self._worst = max(self._worst, self.last)

    def take_worst(self) -> float:
        worst, self._worst = self._worst, 0.0
        return worst

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
