"""Cleanup hooks (reference §17): what an app closes when it stops, in reverse order of
registration, each under its own timeout and never past the overall deadline.

    health.on_stop(pool.close, timeout="5s")          # registered at start-up
    reports = await hooks.run(deadline)               # by the shell, once the app is drained

A hook that raises is logged with its name and the next hooks still run; one that hangs
is cut at its timeout (or at the deadline, whichever comes first) and reported as timed
out. A synchronous hook runs in a thread of its own: a hung one is not waited for (its
thread is a daemon), and it never holds the event loop. A second signal (`skip`) cuts
the hook running at that moment short.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from healthd.deadline import Clock
from healthd.durations import human_duration, parse_duration

log = logging.getLogger("healthd")
DEFAULT_TIMEOUT = 5.0

Outcome = Literal["ok", "failed", "timed out", "skipped"]


@dataclass(frozen=True, slots=True)
class HookReport:
    """How one hook ended: `took` seconds, its outcome, and the error's text if it failed."""

    name: str
    took: float
    outcome: Outcome = "ok"
    error: str = ""

    def describe(self) -> str:
        """`db.close 0.02 s`, `kafka.flush 5.00 s (timed out)`, `cache.close 0.00 s (failed:
        RuntimeError: boom)`."""
        note = {"ok": "", "timed out": " (timed out)", "skipped": " (skipped)"}.get(
            self.outcome, f" (failed: {self.error})"
        )
        return f"{self.name} {self.took:.2f} s{note}"


@dataclass(frozen=True, slots=True)
class Hook:
    fn: Callable[[], Any]
    name: str
    timeout: float


def _timeout(value: float | str) -> float:
    seconds = parse_duration(value) if isinstance(value, str) else float(value)
    if isinstance(value, bool) or seconds <= 0:
        raise ValueError(f"a hook's timeout must be a positive duration, not {value!r}")
    return seconds


def _name(fn: Callable[..., Any]) -> str:
    owner = getattr(fn, "__self__", None)  # a bound method: `Pool.close`, as the user wrote it
    name = getattr(fn, "__name__", None) or type(fn).__name__
    if owner is not None and not inspect.ismodule(owner):
        return f"{type(owner).__name__}.{name}"
    return str(name)


class Hooks:
    """The cleanup hooks of one Health, run once (a second `run` has nothing left)."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self._hooks: list[Hook] = []

    def __len__(self) -> int:
        return len(self._hooks)

    def add(
        self,
        fn: Callable[[], Any],
        name: str | None = None,
        timeout: float | str = DEFAULT_TIMEOUT,
    ) -> None:
        """Register `fn` (sync or async, no arguments) to run at stop, under `timeout`
        (`"5s"`, `"250ms"`, or seconds); `name` defaults to the function's."""
        if not callable(fn):
            raise TypeError(f"on_stop: {type(fn).__name__} is not callable")
        self._hooks.append(Hook(fn, name or _name(fn), _timeout(timeout)))

    async def run(self, deadline: float, skip: asyncio.Event | None = None) -> list[HookReport]:
        """Run every hook, last registered first, none past `deadline` (on this clock);
        `skip` set while a hook runs cuts that hook short. The reports, in running order."""
        hooks, self._hooks = self._hooks[::-1], []
        reports = []
        for hook in hooks:
            reports.append(await self._one(hook, deadline, skip))
        return reports

    async def _one(self, hook: Hook, deadline: float, skip: asyncio.Event | None) -> HookReport:
        started = self.clock()
        limit = min(hook.timeout, deadline - started)
        if limit <= 0:
            log.warning("hook %s skipped: the shutdown deadline has passed", hook.name)
            return HookReport(hook.name, 0.0, "skipped")
        work = asyncio.ensure_future(_call(hook))
        waits: set[asyncio.Future[Any]] = {work}
        skipped = asyncio.ensure_future(skip.wait()) if skip is not None else None
        if skipped is not None:
            waits.add(skipped)
        try:
            await asyncio.wait(waits, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if skipped is not None:
                skipped.cancel()
        took = self.clock() - started
        if not work.done():
            work.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait({work}, timeout=0.1)  # let an async hook see its cancel
            why = "a second signal" if skip is not None and skip.is_set() else "its timeout"
            if skip is not None:
                skip.clear()  # it skipped this wait only
            log.warning("hook %s cut after %s (%s)", hook.name, human_duration(took), why)
            return HookReport(hook.name, took, "timed out")
        exc = work.exception()
        if exc is not None:
            text = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            log.error("hook %s failed after %s: %s", hook.name, human_duration(took), text)
            return HookReport(hook.name, took, "failed", text)
        return HookReport(hook.name, took)


async def _call(hook: Hook) -> Any:
    """Call the hook: awaited on the loop if it is async, else in a daemon thread."""
    fn = hook.fn
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an async callable object
    ):
        return await fn()
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if done.done():
            return  # cut at its timeout: nobody waits for it any more
        if ok:
            done.set_result(value)
        else:
            done.set_exception(value)

    def work() -> None:
        try:
            value, ok = fn(), True
        except BaseException as exc:  # noqa: BLE001 - handed to the loop as the hook's failure
            value, ok = exc, False
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(settle, ok, value)

    # A thread per hook, not the default executor: asyncio.run waits for that one at exit,
    # so a hung hook there would hold the process past every deadline.
    threading.Thread(target=work, name=f"healthd-hook:{hook.name}", daemon=True).start()
    result = await done
    if inspect.isawaitable(result):  # a sync function that returned a coroutine
        return await result
    return result
