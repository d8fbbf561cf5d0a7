"""`disk`: a pass means the free space at `path` is above both levels.

`os.statvfs` can hang forever on a dead NFS or FUSE mount, so it runs in a daemon
thread of its own (never the default executor, which `getaddrinfo` shares; and not a
ThreadPoolExecutor, whose threads are joined at exit, so a hung mount would hold
healthd's exit). One call per path at a time: runs that overlap (two checks on `/` in
one evaluation) share it, and once a run has timed out waiting on it, later runs for
that path fail at once instead of starting another thread: one stuck thread per path.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

from pydantic import Field, model_validator

from healthd.checks.base import Context, SpecBase
from healthd.deadline import Deadline
from healthd.errors import CheckFailed
from healthd.model import Observation, Outcome, Reason


@dataclass(slots=True)
class _Call:
    """A statvfs call that has not returned yet."""

    future: asyncio.Future[os.statvfs_result]
    since: float  # monotonic
    overran: bool = False  # a run timed out waiting on it


_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def format_bytes(size: float) -> str:
    """`12.1 GiB`."""
    for unit in _UNITS[:-1]:
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} {_UNITS[-1]}"


class DiskSpec(SpecBase):
    kind: Literal["disk"] = "disk"
    example: ClassVar[dict[str, Any]] = {
        "path": "/",
        "warn_free_percent": 1,
        "fail_free_percent": 0,
    }
    path: str = Field(default="/", min_length=1, description="any path on the filesystem")
    warn_free_percent: float = Field(default=10.0, ge=0, le=100)
    fail_free_percent: float = Field(default=5.0, ge=0, le=100)

    @model_validator(mode="after")
    def _levels(self) -> Self:
        if self.warn_free_percent <= self.fail_free_percent:
            raise ValueError("warn_free_percent: must be above fail_free_percent")
        return self

    def build(self, context: Context | None = None) -> DiskCheck:
        pending = (context or Context()).pending
        return DiskCheck(self.path, self.warn_free_percent, self.fail_free_percent, pending)


class DiskCheck:
    def __init__(self, path: str, warn: float, fail: float, pending: dict[str, Any]) -> None:
        self.path, self.warn, self.fail = path, warn, fail
        # The daemon's calls in progress by key, shared by its checks (loop thread only): a
        # hung mount costs one thread however many checks (or reloaded copies) look at it.
        self.calls = pending
        self.key = f"statvfs:{path}"

    async def __call__(self, deadline: Deadline) -> Observation:
        call: _Call | None = self.calls.get(self.key)
        if call is not None and call.overran:
            age = time.monotonic() - call.since
            raise CheckFailed(
                Reason.TIMEOUT, f"{self.path}: statvfs still hanging after {age:.0f}s"
            )
        if call is None:
            future = _statvfs(self.path, lambda: self.calls.pop(self.key, None))
            call = self.calls[self.key] = _Call(future, time.monotonic())
        try:
            stats = await asyncio.shield(call.future)
        except asyncio.CancelledError:
            call.overran = True  # cancelled at this run's deadline: the mount hangs
            raise
        except FileNotFoundError:
            raise CheckFailed(Reason.UNHEALTHY, f"{self.path}: no such path") from None
        except OSError as exc:
            raise CheckFailed(Reason.UNEXPECTED, f"{self.path}: {exc.strerror}") from None
        total = stats.f_blocks * stats.f_frsize
        if total == 0:
            raise CheckFailed(Reason.UNEXPECTED, f"{self.path}: filesystem reports no size")
        free = stats.f_bavail * stats.f_frsize  # what an unprivileged writer can use
        percent = 100 * free / total
        text = f"{percent:.1f}% free ({format_bytes(free)} of {format_bytes(total)})"
        if percent <= self.fail:
            raise CheckFailed(Reason.UNHEALTHY, f"{text}, at or below {self.fail:g}%")
        if percent <= self.warn:
            return Observation(Outcome.WARN, f"{text}, at or below {self.warn:g}%")
        return Observation(message=text)


def _statvfs(path: str, done: Callable[[], object]) -> asyncio.Future[os.statvfs_result]:
    """`os.statvfs(path)` in a daemon thread; the future resolves on the loop, after
    `done()`."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[os.statvfs_result] = loop.create_future()
    future.add_done_callback(lambda f: f.cancelled() or f.exception())  # read: no warning

    def settle(result: os.statvfs_result | None, error: BaseException | None) -> None:
        done()
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def work() -> None:
        try:
            result, error = os.statvfs(path), None
        except OSError as exc:
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name="healthd-statvfs", daemon=True).start()
    return future
