"""The values that travel through healthd: frozen, slotted, no I/O.

Observation ─(runner)─▶ CheckResult ─(evaluator)─▶ CheckState ─(store)─▶ Snapshot
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from healthd.flapping import Flapping


class Outcome(StrEnum):
    """What one run of a check saw."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    TIMEOUT = "timeout"

    @property
    def good(self) -> bool:
        return self in (Outcome.PASS, Outcome.WARN)


class Status(StrEnum):
    """A check's standing after thresholds and freshness."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    TIMEOUT = "timeout"
    UNKNOWN = "unknown"
    SKIPPED = "skipped"  # not run: a `depends_on` parent is failing (reference §2)

    @property
    def failing(self) -> bool:
        """Weighs on its groups as failing (a skipped check counts with its own `critical`)."""
        return self in (Status.FAIL, Status.TIMEOUT, Status.SKIPPED)


class State(StrEnum):
    """A group's state; docs/reference.md §2 gives the precedence."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    DRAINING = "draining"
    UNKNOWN = "unknown"


class Reason(StrEnum):
    """Why a run did not pass: a small, stable set fit for metric labels."""

    OK = "ok"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    AUTH_FAILED = "auth_failed"
    DNS = "dns"
    TLS = "tls"
    PROTOCOL = "protocol"
    UNHEALTHY = "unhealthy"
    UNEXPECTED = "unexpected"
    SKIPPED = "skipped"  # not run: a `depends_on` parent is failing
    FLAPPING = "flapping"  # shown for a check held at `fail` by flap detection (never a run's)


@dataclass(frozen=True, slots=True)
class Observation:
    """What a check returns when it did not raise: a pass unless it says otherwise.

    `nested` carries another healthd's checks (the `remote` kind) for our detail view.
    """

    outcome: Outcome = Outcome.PASS
    message: str = "ok"
    reason: Reason = Reason.OK
    nested: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One finished run of one check."""

    name: str
    kind: str
    outcome: Outcome
    reason: Reason
    message: str
    duration: float  # seconds
    started_at: float  # monotonic
    observed_at: float  # wall clock (time.time()) when it finished
    timeout: float  # the limit this run had, seconds
    nested: Mapping[str, Any] | None = None
    attempts: int = 1  # tries within this run (retries included); 0: skipped, not run

    @property
    def skipped(self) -> bool:
        return self.reason is Reason.SKIPPED


class PastRun(NamedTuple):
    """A result as a check's history keeps it: what the strip and `?history=N` show, in a
    third of a CheckResult's memory (the store keeps `history` of them per check). A named
    tuple, not a frozen dataclass: it is made on every recorded run, and a tuple is built
    in a fifth of the time."""

    outcome: Outcome
    reason: Reason
    message: str
    duration: float  # seconds
    observed_at: float  # wall clock

    @classmethod
    def of(cls, result: CheckResult, previous: PastRun | None = None) -> PastRun:
        """`result`, sharing the previous entry's message when it is the same text."""
        message = result.message
        if previous is not None and previous.message == message:
            message = previous.message
        return cls(result.outcome, result.reason, message, result.duration, result.observed_at)

    @property
    def skipped(self) -> bool:
        return self.reason is Reason.SKIPPED


@dataclass(frozen=True, slots=True)
class CheckState:
    """A check's standing: its last result folded through the thresholds.

    `status` is what readers see; `base` is what the thresholds alone say. They differ
    while the check is flapping (held at `fail`) or skipped (a parent is failing).
    """

    name: str
    kind: str
    critical: bool
    status: Status = Status.UNKNOWN
    last: CheckResult | None = None
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    ever_passed: bool = False
    base: Status = Status.UNKNOWN
    flap: Flapping | None = None  # None: flap detection is off

    @property
    def flapping(self) -> bool:
        return self.flap is not None and self.flap.flapping


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One group's state and the checks behind it, as of one generation of the store.

    `checks` is shared by every reader of that generation (the store builds it once);
    `deadline` and `elapsed` are the one caller's, `groups` every group's state then.
    """

    group: str
    state: State
    draining: bool
    checks: tuple[CheckState, ...]
    excluded: tuple[str, ...] = ()
    deadline: float | None = None  # the budget this evaluation had, seconds
    elapsed: float = 0.0
    groups: Mapping[str, State] = field(default_factory=dict)
    generation: int = 0
    fleet: Mapping[str, str] = field(default_factory=dict)  # check → why a fleet rule holds it


POSTABLE = {"pass": Outcome.PASS, "warn": Outcome.WARN, "fail": Outcome.FAIL}
BEAT_MESSAGE_LIMIT = 300


@dataclass(frozen=True, slots=True)
class Beat:
    """A heartbeat the application posted (admin API), kept by the store."""

    outcome: Outcome
    message: str
    at: float  # monotonic

    @classmethod
    def parse(cls, status: str, message: str, at: float) -> Beat:
        """A beat from a posted `status` (pass, warn or fail: ValueError otherwise)."""
        outcome = POSTABLE.get(status)
        if outcome is None:
            raise ValueError(f"status must be one of pass, warn, fail (got {status!r:.40})")
        line = message.strip().splitlines()[0] if message.strip() else ""
        return cls(outcome, line[:BEAT_MESSAGE_LIMIT], at)
