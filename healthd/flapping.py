"""Pure: flap detection, as Nagios does it (reference §13).

A check flaps when its outcome keeps changing. Over the last `window` runs, each run
is compared with the one before it; a change counts with a weight that grows linearly
from 0.8 for the oldest of those runs to 1.2 for the newest, so recent changes count
more (the weights average 1.0: a change on every run is 100 %). Above `high` percent
the check starts flapping; it stops only once the figure falls below `low`
(hysteresis, so a check near the line does not flap about flapping).

A change is between a good outcome (pass, warn) and a bad one (fail, timeout): a check
alternating between pass and warn, or between fail and timeout, is not flapping.

`Flapping` is a frozen value; `observe(outcome)` returns the next one. The history is
a bit field (bit 0 the newest run, 1 = bad), so a step is a few integer operations.
"""

from __future__ import annotations

from dataclasses import dataclass

from healthd.model import Outcome

OLDEST_WEIGHT, NEWEST_WEIGHT = 0.8, 1.2


@dataclass(frozen=True, slots=True)
class Flapping:
    """A check's flap detector: its settings, its recent outcomes and whether it flaps."""

    window: int = 20  # runs compared with the run before each
    high: float = 0.5  # fraction: start flapping above this
    low: float = 0.25  # fraction: stop flapping below this
    bits: int = 0  # bit i: run i back was bad (bit 0 the newest)
    seen: int = 0  # runs recorded, capped at window + 1
    percent: float = 0.0  # weighted percent of changes over the window, 0..100
    flapping: bool = False

    def __post_init__(self) -> None:
        if self.window < 2:
            raise ValueError("window: must be at least 2")
        if not 0 <= self.low < self.high <= 1:
            raise ValueError("low: must be below high (both between 0% and 100%)")

    def observe(self, outcome: Outcome) -> Flapping:
        """The detector after one more run with `outcome`."""
        keep = self.window + 1
        bits = ((self.bits << 1) | (not outcome.good)) & ((1 << keep) - 1)
        seen = min(self.seen + 1, keep)
        percent = weighted_changes(bits, seen, self.window)
        flapping = percent >= self.low * 100 if self.flapping else percent > self.high * 100
        return Flapping(self.window, self.high, self.low, bits, seen, percent, flapping)


def weight(i: int, window: int) -> float:
    """The weight of a change `i` runs back (0: between the newest run and the one before)."""
    return NEWEST_WEIGHT - (NEWEST_WEIGHT - OLDEST_WEIGHT) * i / (window - 1)


def weighted_changes(bits: int, seen: int, window: int) -> float:
    """Weighted percent of changes among the last `seen` runs in `bits`, over `window`.

    Runs not seen yet count as no change, so a new check's figure grows from 0.
    """
    slots = min(seen - 1, window)
    if slots <= 0:
        return 0.0
    changes = (bits ^ (bits >> 1)) & ((1 << slots) - 1)
    total = 0.0
    i = 0
    while changes:
        if changes & 1:
            total += weight(i, window)
        changes >>= 1
        i += 1
    return round(100.0 * total / window, 9)  # a float sum's last bits never cross `high`
