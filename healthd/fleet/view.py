"""Pure: what instances publish, the fleet view built from it, and the panic rule (reference §14).

Keys under `/healthd/<service>/`:

    instances/<instance>   a Report (JSON), on the instance's lease
    slots/<n>              the instance holding drain slot n (0 ≤ n < max_draining), same lease

The rule, per `shared` critical check failing here (`Rule.decide`):

    panic     failing on ≥ 2 instances and on at least `panic_threshold` of the live ones
              (this one counted with its local facts): the check counts as non-critical,
              the group is `degraded`, the reason says `fleet: 4/5 instances see db failing;
              staying in rotation`.
    settling  a failure younger than `settle`: the check keeps the weight it had before it
              failed (the group does not move yet) while every instance publishes what it
              sees. Everyone who fails within one settle window then decides from the same
              published set: one transition each, to the same answer.
    holding   panic held within the last `settle`: still non-critical (the fleet recovers
              instance by instance, and the last ones must not flip to unhealthy on the way).
    counted   otherwise: the failure counts as critical, as without a fleet.

What an instance publishes are LOCAL facts (the checks failing here), never the outcome of
the rule, so every instance counts the same thing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from healthd.model import State

INSTANCES, SLOTS = "instances/", "slots/"
MAX_REPORT = 64 * 1024


@dataclass(frozen=True, slots=True)
class Report:
    """One instance's published facts."""

    instance: str
    groups: Mapping[str, str]  # group → state, as this instance computes them
    draining: bool
    failing: frozenset[str]  # its `shared` checks failing locally (before any fleet rule)
    at: float = 0.0  # wall clock when published

    @property
    def state(self) -> str:
        """The instance's readiness as the fleet counts it (draining first)."""
        return State.DRAINING.value if self.draining else self.groups.get("readiness", "unknown")

    def encode(self) -> str:
        body = {
            "instance": self.instance,
            "groups": dict(self.groups),
            "draining": self.draining,
            "failing": sorted(self.failing),
            "at": round(self.at, 3),
        }
        return json.dumps(body, separators=(",", ":"), sort_keys=True)

    def same(self, other: Report | None) -> bool:
        """Whether publishing `self` after `other` would tell the fleet nothing new."""
        return (
            other is not None
            and other.groups == self.groups
            and other.draining == self.draining
            and other.failing == self.failing
        )

    @classmethod
    def decode(cls, instance: str, text: str) -> Report | None:
        """A report from its JSON, or None if it is not one (another writer's key)."""
        if len(text) > MAX_REPORT:
            return None
        try:
            data = json.loads(text)
            groups = {str(k): str(v) for k, v in dict(data.get("groups", {})).items()}
            failing = frozenset(str(x) for x in data.get("failing", []))
            return cls(
                instance, groups, bool(data.get("draining")), failing, float(data.get("at", 0))
            )
        except (ValueError, TypeError, AttributeError):
            return None

    def view(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "groups": dict(self.groups),
            "draining": self.draining,
            "failing_shared": sorted(self.failing),
            "published_at": self.at,
        }


@dataclass(slots=True)
class View:
    """The fleet as the watch stream has shown it: reports and slot holders by key."""

    prefix: str
    reports: dict[str, Report] = field(default_factory=dict)
    slots: dict[int, str] = field(default_factory=dict)  # slot → holding instance
    revision: int = 0

    def load(self, revision: int, kvs: Mapping[str, str]) -> None:
        self.reports.clear()
        self.slots.clear()
        for key, value in kvs.items():
            self.apply("put", key, value)
        self.revision = revision

    def apply(self, kind: Literal["put", "delete"] | str, key: str, value: str) -> bool:
        """Fold one watch event in; whether it changed what the fleet looks like."""
        if not key.startswith(self.prefix):
            return False
        rest = key[len(self.prefix) :]
        if rest.startswith(INSTANCES):
            name = rest[len(INSTANCES) :]
            if kind == "delete":
                return self.reports.pop(name, None) is not None
            report = Report.decode(name, value)
            if report is None:
                return False
            old, self.reports[name] = self.reports.get(name), report
            return not report.same(old)
        if rest.startswith(SLOTS) and rest[len(SLOTS) :].isdigit():
            slot = int(rest[len(SLOTS) :])
            if kind == "delete":
                return self.slots.pop(slot, None) is not None
            self.slots[slot] = value
            return True
        return False

    def counts(self, check: str, me: Report) -> tuple[int, int]:
        """(instances failing `check`, live instances), this one counted with `me`."""
        failing = int(check in me.failing)
        live = 1
        for name, report in self.reports.items():
            if name != me.instance:
                live += 1
                failing += check in report.failing
        return failing, live

    def holders(self) -> list[str]:
        return [self.slots[n] for n in sorted(self.slots)]


@dataclass(frozen=True, slots=True)
class Decision:
    """What the rule says about one shared check failing here."""

    rule: Literal["panic", "settling", "holding", "counted"]
    failing: int
    live: int
    reason: str

    @property
    def panic(self) -> bool:
        """The panic rule is in force (the check counts as non-critical)."""
        return self.rule in ("panic", "holding")


def quorum(failing: int, live: int, threshold: float) -> bool:
    """Enough of the fleet sees it: ≥ 2 instances and at least `threshold` of the live ones
    (a failure only this instance sees never qualifies, even in a fleet of one)."""
    return failing >= 2 and failing >= threshold * live - 1e-9


class Rule:
    """The panic rule with its two clocks per check: when the local failure began, and when
    the quorum last held. No I/O; `now` is passed in (tests move it by hand)."""

    def __init__(self, threshold: float, settle: float) -> None:
        self.threshold, self.settle = threshold, settle
        self._since: dict[str, float] = {}
        self._quorum: dict[str, float] = {}

    def forget(self, check: str) -> None:
        """The check passes here again (or is no longer shared): its clocks start over."""
        self._since.pop(check, None)
        self._quorum.pop(check, None)

    def began(self, check: str, at: float) -> None:
        """Its local failure began at `at` (kept if already failing)."""
        self._since.setdefault(check, at)

    def decide(self, check: str, failing: int, live: int, now: float) -> Decision:
        since = self._since.setdefault(check, now)
        if quorum(failing, live, self.threshold):
            self._quorum[check] = now
            why = f"fleet: {failing}/{live} instances see {check} failing; staying in rotation"
            return Decision("panic", failing, live, why)
        last = self._quorum.get(check)
        if now - since < self.settle:
            why = (
                f"fleet: {check} failing here, {failing}/{live} instances see it; "
                f"settling {self.settle:g}s before it counts"
            )
            return Decision("settling", failing, live, why)
        if last is not None and now - last < self.settle:
            why = (
                f"fleet: {failing}/{live} instances see {check} failing, below the threshold "
                f"for {now - last:.1f}s; staying in rotation for {self.settle:g}s"
            )
            return Decision("holding", failing, live, why)
        return Decision("counted", failing, live, "")

    def next_change(self, now: float) -> float:
        """The earliest time a decision may change with no new facts (a window running out)."""
        times = [t + self.settle for t in (*self._since.values(), *self._quorum.values())]
        later = [t for t in times if t > now]
        return min(later, default=math.inf)
