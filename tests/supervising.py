"""Running `healthd run -c FILE -- CMD` under test: the recording child (supervised_app.py),
its record, and a few waits."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp

from tests.procs import Healthd

APP = [sys.executable, str(Path(__file__).with_name("supervised_app.py"))]
DRAIN, GRACE, STOP_TIMEOUT = 1.0, 2.0, 1.5
EARLY = 0.02  # a timer may fire this much before its time as the other process sees it


def config(shutdown: str = "", checks: str = "", extra: str = "") -> str:
    return f"""
server: {{listen: "127.0.0.1:{{port}}", admin_listen: "127.0.0.1:{{admin_port}}",
         show_details: always}}
shutdown: {{drain_delay: {DRAIN}s, grace: {GRACE}s, stop_timeout: {STOP_TIMEOUT}s{shutdown}}}
{extra}
checks:
  - {{name: loop, kind: loop, interval: 200ms, timeout: 100ms, fail_lag: 5s}}
{checks}
"""


class Record:
    """What the child wrote: `(wall time, what)` per line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def events(self) -> list[tuple[float, str]]:
        if not self.path.exists():
            return []
        lines = self.path.read_text().splitlines()
        return [(float(t), what) for t, _, what in (x.partition(" ") for x in lines if x)]

    def when(self, what: str) -> float:
        (t,) = [t for t, w in self.events() if w == what]
        return t

    def saw(self, what: str) -> bool:
        return any(w == what for _, w in self.events())

    async def wait(self, what: str, timeout: float = 10.0) -> float:
        """When the child wrote `what` (bounded wait: another process's file has no event)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.saw(what):
                return self.when(what)
            await asyncio.sleep(0.02)
        raise AssertionError(f"the child never wrote {what!r}: {self.events()}")

    def group(self) -> int | None:
        started = [w for _, w in self.events() if w.startswith("started ")]
        return int(started[0].split()[2]) if started else None


@contextlib.asynccontextmanager
async def supervised(
    tmp_path: Path, *args: str, cfg: str | None = None, argv: Sequence[str] | None = None,
    env: dict[str, str] | None = None, prefix: Sequence[str] = (),
) -> AsyncIterator[tuple[Healthd, Record]]:  # fmt: skip
    """healthd supervising the recording child; the child's group is killed at the end
    whatever happened (a child that ignores signals must not outlive the test)."""
    record = Record(tmp_path / "record.txt")
    command = argv if argv is not None else [*APP, str(record.path), *args]
    h = Healthd(
        tmp_path, cfg if cfg is not None else config(), argv=command, env=env, prefix=prefix
    )
    try:
        async with h:
            yield h, record
    finally:
        group = record.group()
        # ATTENTION: under a prefix (a PID namespace) the recorded group is the namespace's
        # number, not ours: killing it here could hit an unrelated process group. The
        # namespace goes with its PID 1 (unshare --kill-child) instead.
        if group is not None and not prefix:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)


async def started(record: Record) -> None:
    end = time.monotonic() + 10
    while record.group() is None:
        assert time.monotonic() < end, "the child never started"
        await asyncio.sleep(0.02)


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.text()


async def wait_ready(h: Healthd, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while (await get(h.url("/readyz")))[0] != 200:
        assert time.monotonic() < end, "/readyz never answered 200"
        await asyncio.sleep(0.02)


def exit_line(h: Healthd) -> str:
    (line,) = [x for x in h.lines if " exit: " in x or '"event": "exit"' in x]
    return line
