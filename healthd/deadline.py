"""The Deadline value, and how an inbound request's budget becomes one (DESIGN §3)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from healthd.durations import parse_duration
from healthd.errors import BudgetError

Clock = Callable[[], float]

HEADER = "X-Request-Timeout-Ms"
_GRPC_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


@dataclass(frozen=True, slots=True)
class Deadline:
    """An absolute instant on a monotonic clock (by default `time.monotonic`, the loop's clock)."""

    at: float
    clock: Clock = field(default=time.monotonic, compare=False, repr=False)

    @classmethod
    def after(cls, seconds: float, clock: Clock = time.monotonic) -> Deadline:
        return cls(clock() + seconds, clock)

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.at - self.clock())

    @property
    def expired(self) -> bool:
        return self.clock() >= self.at

    def child(self, limit: float) -> Deadline:
        """The earlier of this deadline and `limit` seconds from now."""
        return Deadline(min(self.at, self.clock() + limit), self.clock)

    def headers(self) -> dict[str, str]:
        """What an onward HTTP call sends so the next hop answers within our budget."""
        return {HEADER: str(math.floor(self.remaining() * 1000))}


def _number(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BudgetError(f"{name}: {text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise BudgetError(f"{name}: {text!r} must be a finite, non-negative number")
    return value


def parse_grpc_timeout(text: str) -> float:
    """gRPC wire format: up to 8 digits and a unit letter, e.g. `250m` → 0.25 s."""
    if not (2 <= len(text) <= 9) or not text[:-1].isdigit() or text[-1] not in _GRPC_UNITS:
        raise BudgetError(f"grpc-timeout: {text!r} is not a gRPC timeout (e.g. 250m, 2S)")
    return int(text[:-1]) * _GRPC_UNITS[text[-1]]


def inbound_budget(
    query: Mapping[str, str],
    headers: Mapping[str, str],
    *,
    default: float,
    maximum: float,
    offset: float,
) -> float:
    """The caller's budget in seconds, first found wins, capped by `maximum`.

    Raises BudgetError (→ 400) when the first value found cannot be parsed.
    """
    budget: float
    if "timeout" in query:
        try:
            budget = parse_duration(query["timeout"])
        except ValueError as exc:
            raise BudgetError(f"?timeout: {exc}") from None
    elif HEADER in headers:
        budget = _number(HEADER, headers[HEADER]) / 1000
    elif "grpc-timeout" in headers:
        budget = parse_grpc_timeout(headers["grpc-timeout"])
    elif "X-Prometheus-Scrape-Timeout-Seconds" in headers:
        scrape = _number(
            "X-Prometheus-Scrape-Timeout-Seconds", headers["X-Prometheus-Scrape-Timeout-Seconds"]
        )
        budget = max(0.0, scrape - offset)
    elif "x-envoy-expected-rq-timeout-ms" in headers:
        budget = _number(
            "x-envoy-expected-rq-timeout-ms", headers["x-envoy-expected-rq-timeout-ms"]
        )
        budget /= 1000
    else:
        budget = default
    return min(budget, maximum)
