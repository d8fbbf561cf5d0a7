"""`disk`: free space at a path against warn/fail levels."""

from __future__ import annotations

import asyncio
import os
import re
import threading
from typing import Any

import pytest
from pydantic import ValidationError

from healthd import runner
from healthd.checks.base import Context
from healthd.checks.disk import DiskSpec, format_bytes
from healthd.deadline import Deadline
from healthd.model import CheckResult, Outcome, Reason

MESSAGE = re.compile(r"^\d+\.\d% free \(\d+(\.\d)? [KMGTP]?i?B of \d+(\.\d)? [KMGTP]?i?B\)")


async def run(context: Context | None = None, **keys: Any) -> CheckResult:
    """One run of a disk check on `/`, built with `context` (one daemon's) or its own."""
    spec = DiskSpec(name="root", kind="disk", **keys)
    return await runner.run(spec, spec.build(context), Deadline.after(5.0))


async def test_root_passes() -> None:
    """`/` with the default levels passes and says how much is free."""
    result = await run()
    assert result.outcome is Outcome.PASS, result.message
    assert MESSAGE.match(result.message), result.message


async def test_warns_below_warn_level() -> None:
    """A warn level above the free share → warn."""
    result = await run(warn_free_percent=99.9, fail_free_percent=0)
    assert result.outcome is Outcome.WARN
    assert result.message.endswith("at or below 99.9%")


async def test_fails_below_fail_level() -> None:
    """A fail level above the free share → fail, reason unhealthy."""
    result = await run(warn_free_percent=99.9, fail_free_percent=99.8)
    assert (result.outcome, result.reason) == (Outcome.FAIL, Reason.UNHEALTHY)
    assert MESSAGE.match(result.message), result.message


async def test_missing_path_fails() -> None:
    """A path that does not exist → fail naming the path."""
    result = await run(path="/does/not/exist")
    assert result.outcome is Outcome.FAIL
    assert result.message == "/does/not/exist: no such path"


async def test_hung_statvfs(monkeypatch: pytest.MonkeyPatch) -> None:
    """statvfs stuck as on a dead NFS mount: timeout at the deadline, then fail fast, no pile-up.

    (The one stand-in in this file: no dead mount can be made here without root FUSE tools.)
    """
    release = threading.Event()
    real = os.statvfs

    def stuck(path: str) -> os.statvfs_result:
        release.wait(5.0)
        return real(path)

    monkeypatch.setattr(os, "statvfs", stuck)  # disk calls os.statvfs in its thread
    daemon = Context()  # what one daemon's checks share
    first = await run(daemon, timeout="300ms")
    assert (first.outcome, first.reason) == (Outcome.TIMEOUT, Reason.TIMEOUT)
    assert 0.28 <= first.duration <= 0.6
    stuck_threads = [t for t in threading.enumerate() if t.name == "healthd-statvfs"]
    assert stuck_threads
    assert all(t.daemon for t in stuck_threads)  # a stuck thread never holds healthd's exit
    second = await run(daemon, timeout="300ms")
    assert second.reason is Reason.TIMEOUT
    assert "still hanging" in second.message
    assert second.duration < 0.05  # no second thread waits on the same mount
    release.set()
    for thread in stuck_threads:
        thread.join(2.0)
    await asyncio.sleep(0.01)  # the settle callback runs on the loop
    assert (await run(daemon)).outcome is Outcome.PASS


def test_format_bytes() -> None:
    """Sizes read like df -h, in binary units."""
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(12.1 * 1024**3) == "12.1 GiB"


@pytest.mark.parametrize(
    "levels",
    [
        {"warn_free_percent": 5, "fail_free_percent": 10},
        {"warn_free_percent": 5, "fail_free_percent": 5},
        {"warn_free_percent": 101},
        {"fail_free_percent": -1},
    ],
)
def test_invalid_levels(levels: dict[str, float]) -> None:
    """Levels outside 0..100, or warn not above fail, are config errors."""
    with pytest.raises(ValidationError):
        DiskSpec(name="root", kind="disk", **levels)


async def test_overlapping_runs_on_one_path_share_the_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two checks on one path in one evaluation, statvfs slow (100 ms): both pass, one call."""
    real, calls = os.statvfs, []

    def slow(path: str) -> os.statvfs_result:
        calls.append(path)
        threading.Event().wait(0.1)
        return real(path)

    monkeypatch.setattr(os, "statvfs", slow)
    daemon = Context()
    first, second = await asyncio.gather(run(daemon, timeout="500ms"), run(daemon, timeout="500ms"))
    assert (first.outcome, second.outcome) == (Outcome.PASS, Outcome.PASS), second.message
    assert calls == ["/"]
