"""Run one check under a deadline and turn whatever happens into a CheckResult.

`run()` never raises except CancelledError from its caller: a check that raises,
hangs, or returns garbage becomes a failing result with a stable reason.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from healthd.checks.base import Check, SpecBase
from healthd.deadline import Deadline
from healthd.durations import human_duration
from healthd.errors import CheckError
from healthd.model import CheckResult, Observation, Outcome, Reason


def classify(exc: BaseException) -> tuple[Reason, str]:
    """A stable reason and a one-line message for an exception a check let escape."""
    if isinstance(exc, CheckError):
        return exc.reason, exc.message
    text = str(exc) or type(exc).__name__
    if isinstance(exc, socket.gaierror):
        return Reason.DNS, f"dns: {text}"
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return Reason.TLS, f"tls: {text}"
    if isinstance(exc, ConnectionRefusedError):
        return Reason.REFUSED, "connection refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError | asyncio.IncompleteReadError):
        return Reason.PROTOCOL, f"connection closed: {text}"
    if isinstance(exc, TimeoutError):
        return Reason.TIMEOUT, "timed out"
    if isinstance(exc, OSError) and "Connect call failed" in text:
        return Reason.REFUSED, "connection refused"
    return Reason.UNEXPECTED, f"{type(exc).__name__}: {text}"


def _first_line(text: str, limit: int = 300) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:limit]


RETRYABLE = frozenset({Reason.REFUSED, Reason.PROTOCOL, Reason.DNS})
"""Fast failures worth another attempt within the run (never a timeout: reference §13)."""
Sleep = Callable[[float], Awaitable[None]]


async def run(
    spec: SpecBase,
    check: Check,
    deadline: Deadline,
    *,
    wall: Callable[[], float] = time.time,
    sleep: Sleep = asyncio.sleep,
) -> CheckResult:
    """Run `check` until it returns or `min(spec.timeout, deadline)` passes.

    After a fast failure (RETRYABLE) it tries again, up to `spec.retries` times, after
    `spec.retry_delay`, but only while the time left exceeds the delay plus the last
    attempt's duration: a retry never makes the answer late. The result is the last
    attempt's, with `attempts` counting them and `duration` spanning all of them.
    """
    limit = deadline.child(spec.timeout)
    budget = max(0.0, limit.at - limit.clock())
    started = limit.clock()
    attempts = 0
    while True:
        attempt_started = limit.clock()
        attempts += 1
        outcome, reason, message, nested = await _attempt(check, limit, budget)
        took = limit.clock() - attempt_started
        if attempts > spec.retries or reason not in RETRYABLE:
            break
        if limit.at - limit.clock() <= spec.retry_delay + took:
            break
        await sleep(spec.retry_delay)
    duration = limit.clock() - started
    if outcome is Outcome.PASS and spec.warn_after is not None and duration > spec.warn_after:
        outcome = Outcome.WARN
        message = f"slow: {human_duration(duration)} > warn_after {human_duration(spec.warn_after)}"
    return CheckResult(
        name=spec.name,
        kind=spec.kind,
        outcome=outcome,
        reason=reason,
        message=_first_line(message) or outcome.value,
        duration=duration,
        started_at=started,
        observed_at=wall(),
        timeout=budget,
        nested=nested,
        attempts=attempts,
    )


async def _attempt(
    check: Check, limit: Deadline, budget: float
) -> tuple[Outcome, Reason, str, Mapping[str, Any] | None]:
    """One call of `check` within `limit`; `budget` is the run's, for the timeout message."""
    nested = None
    left = max(0.0, limit.at - limit.clock())
    try:
        if left <= 0:
            raise TimeoutError
        # asyncio.timeout_at uses loop.time(), the same monotonic clock as Deadline's default.
        async with asyncio.timeout_at(asyncio.get_running_loop().time() + left):
            observation = await check(limit)
        if not isinstance(observation, Observation):
            outcome, reason = Outcome.FAIL, Reason.UNEXPECTED
            message = f"check returned {type(observation).__name__}, not an Observation"
        else:
            outcome, reason = observation.outcome, observation.reason
            message, nested = observation.message, observation.nested
    except TimeoutError:
        outcome, reason = Outcome.TIMEOUT, Reason.TIMEOUT
        message = f"timeout after {human_duration(budget)}"
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure becomes a result, by contract
        reason, message = classify(exc)
        outcome = Outcome.TIMEOUT if reason is Reason.TIMEOUT else Outcome.FAIL
        nested = getattr(exc, "nested", None)  # remote: the other side's checks, on failure too
    return outcome, reason, message, nested
