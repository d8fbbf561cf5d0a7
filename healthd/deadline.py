"""The Deadline value, and how an inbound request's budget becomes one (reference §3)."""

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

    @classmethod
    def within(cls, budget: float, margin: float, clock: Clock = time.monotonic) -> Deadline:
        """A caller's deadline: its `budget` less the `margin` kept back to write the answer
        (reference §3), so the answer leaves before the caller gives up. The one place it is
        computed (probes, gRPC, the CLI, `Health.evaluate`)."""
        return cls(clock() + budget - margin, clock)

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.at - self.clock())

    @property
    def expired(self) -> bool:
        return self.clock() >= self.at

    def child(self, limit: float, now: float | None = None) -> Deadline:
        """The earlier of this deadline and `limit` seconds from `now` (default: the clock's
        now): `min(check.timeout, remaining budget)`, the one place it is computed."""
        start = self.clock() if now is None else now
        return Deadline(min(self.at, start + limit), self.clock)

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


def format_grpc_timeout(seconds: float) -> str:
    """`parse_grpc_timeout`'s inverse in the finest unit that fits its 8 digits, rounded
    down: never later than the deadline it stands for (a gRPC call's, as on the wire)."""
    for unit in ("n", "u", "m", "S", "M"):
        value = math.floor(max(0.0, seconds) / _GRPC_UNITS[unit])
        if value < 10**8:
            return f"{value}{unit}"
    return f"{min(10**8 - 1, math.floor(seconds / 3600))}H"


def _header_ms(name: str) -> Callable[[str, float], float]:
    return lambda text, offset: _number(name, text) / 1000


def _scrape(text: str, offset: float) -> float:
    return max(0.0, _number(PROMETHEUS, text) - offset)


PROMETHEUS = "X-Prometheus-Scrape-Timeout-Seconds"
HEADERS: tuple[tuple[str, Callable[[str, float], float]], ...] = (
    (HEADER, _header_ms(HEADER)),
    ("grpc-timeout", lambda text, offset: parse_grpc_timeout(text)),
    (PROMETHEUS, _scrape),
    ("x-envoy-expected-rq-timeout-ms", _header_ms("x-envoy-expected-rq-timeout-ms")),
)
"""The inbound budget's headers, first found wins (after the `?timeout=` query): the one
precedence list (reference §3). Each parses its text (given `deadline.offset`) to seconds."""


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
    budget = default
    if "timeout" in query:
        try:
            budget = parse_duration(query["timeout"])
        except ValueError as exc:
            raise BudgetError(f"?timeout: {exc}") from None
    else:
        for name, parse in HEADERS:
            text = headers.get(name)
            if text is not None:
                budget = parse(text, offset)
                break
    return min(budget, maximum)


class Budgets:
    """`inbound_budget` for one `deadline:` config, with a fast path for the probe hot path.

    `fast(headers)` answers a request without a query from the default or from a header
    text seen before (a kubelet sends the same `X-Request-Timeout-Ms` every time), and
    None when `parse` must decide (a new text, or one that is a 400).
    """

    MEMO = 16  # distinct header texts remembered

    def __init__(self, default: float, maximum: float, offset: float) -> None:
        self.default, self.maximum, self.offset = min(default, maximum), maximum, offset
        self._memo: dict[str, dict[str, float]] = {name: {} for name, _ in HEADERS}
        self._remembered = 0

    def fast(self, headers: Mapping[str, str]) -> float | None:
        for name, _ in HEADERS:
            text = headers.get(name)
            if text is not None:
                return self._memo[name].get(text)
        return self.default

    def parse(self, query: Mapping[str, str], headers: Mapping[str, str]) -> float:
        """The budget (BudgetError when unparseable); remembers header texts for `fast`."""
        budget = inbound_budget(
            query, headers, default=self.default, maximum=self.maximum, offset=self.offset
        )
        if "timeout" not in query and self._remembered < self.MEMO:
            for name, _ in HEADERS:
                text = headers.get(name)
                if text is not None:
                    self._memo[name][text] = budget
                    self._remembered += 1
                    break
        return budget
