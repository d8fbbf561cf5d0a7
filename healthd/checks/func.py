"""`func`: an in-process check, built in code (never from YAML): `checks.Func(name, fn)`.

    async def fn(deadline) -> str | None     awaited on the loop, under the run's deadline
    def fn(deadline) -> str | None           run in a thread of its own; past the deadline the
                                             run is a timeout and the thread is not waited for

`fn` may also take no argument. It returns the pass message (None: "ok"), returns or
raises `Warn("…")` for a warn, and raises anything else for a fail with the exception's
text. It takes every common key (thresholds, retries, depends_on, flapping, ...) and is
recorded, measured and traced like every other kind.

A synchronous `fn` still running from an earlier run (it hung past its deadline) is not
started again beside itself: that run fails at once, saying so, so a hung function holds
one thread, not one per interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from pydantic import ConfigDict, Field, SkipValidation

from healthd.checks.base import Context, SpecBase
from healthd.deadline import Deadline
from healthd.errors import CheckFailed
from healthd.model import Observation, Outcome, Reason


class Warn(Exception):
    """Returned or raised by a `func` check's function: the run is a `warn`."""


class FuncSpec(SpecBase):
    """An in-process check: `fn` is called once per run."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    kind: Literal["func"] = "func"
    fn: SkipValidation[Callable[..., Any]] = Field(exclude=True)

    def build(self, context: Context | None = None) -> FuncCheck:
        return FuncCheck(self.name, self.fn)


def Func(name: str, fn: Callable[..., Any], **common: Any) -> FuncSpec:
    """An in-process check named `name` calling `fn` (see the module's docstring)."""
    if not callable(fn):
        raise TypeError(f"checks.Func({name!r}): fn must be callable, not {type(fn).__name__}")
    return FuncSpec(name=name, fn=fn, **common)


class FuncCheck:
    """Calls the function and maps what it says to an Observation (or raises)."""

    def __init__(self, name: str, fn: Callable[..., Any]) -> None:
        self.name, self.fn = name, fn
        self.is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004 - an async callable object
        )
        try:
            self.takes_deadline = bool(inspect.signature(fn).parameters)
        except (TypeError, ValueError):  # a builtin without a signature: call it bare
            self.takes_deadline = False
        self.busy: threading.Thread | None = None  # a synchronous call still running
        self.busy_since = 0.0

    async def __call__(self, deadline: Deadline) -> Observation:
        args = (deadline,) if self.takes_deadline else ()
        try:
            if self.is_async:
                said = await self.fn(*args)
            else:
                said = await self._in_thread(args)
        except Warn as exc:
            said = exc
        if isinstance(said, Warn):
            return Observation(Outcome.WARN, str(said) or "warn", Reason.OK)
        if said is None:
            return Observation()
        if isinstance(said, str):
            return Observation(message=said or "ok")
        raise CheckFailed(
            Reason.UNEXPECTED, f"returned {type(said).__name__}, not a message or None"
        )

    async def _in_thread(self, args: tuple[Any, ...]) -> Any:
        busy = self.busy
        if busy is not None and busy.is_alive():
            took = time.monotonic() - self.busy_since
            raise CheckFailed(Reason.TIMEOUT, f"still running from an earlier run ({took:.1f}s)")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()

        def settle(ok: bool, value: Any) -> None:
            if done.done():
                return  # the run gave up (its deadline): nobody waits for this value
            if ok:
                done.set_result(value)
            else:
                done.set_exception(value)

        def work() -> None:
            try:
                value, ok = self.fn(*args), True
            except BaseException as exc:  # noqa: BLE001 - handed to the loop as the run's failure
                value, ok = exc, False
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody to tell
                loop.call_soon_threadsafe(settle, ok, value)

        # A thread per call, not the loop's default executor: a hung function must not
        # take a thread that getaddrinfo and everything else share.
        thread = threading.Thread(target=work, name=f"healthd-func:{self.name}", daemon=True)
        self.busy, self.busy_since = thread, time.monotonic()
        thread.start()
        return await done
