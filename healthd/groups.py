"""The groups: their names, which checks each holds, and which of them drain (reference §2).

This module is the only place that knows them; config, the store and every view ask it.

    readiness  every check unless `groups.readiness` says otherwise     /readyz
    liveness   the `loop` and `process` checks unless `groups.liveness` says otherwise
                                                                         /livez (never drains)
    startup    the service's own checks (`process` checks and those marked `startup: true`)
               if there are any, else the critical readiness checks; latched healthy once
               each passed                                               /startupz
    health     every check                                               /health
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

READINESS, LIVENESS, STARTUP, HEALTH = "readiness", "liveness", "startup", "health"
GROUPS = (READINESS, LIVENESS, STARTUP, HEALTH)
"""Every group the store keeps a state for, in the order transitions are announced."""
PROBED = (READINESS, LIVENESS, STARTUP)
"""The groups /health, /admin/state and healthd_state list."""
CONFIGURABLE = (READINESS, LIVENESS)
"""The groups a config's `groups:` section may shape with include/exclude patterns."""
ENDPOINTS = {"livez": LIVENESS, "readyz": READINESS, "startupz": STARTUP, "health": HEALTH}
"""Probe path → group."""
CHECK_PATHS = ("livez", "readyz")
"""Probe paths that also answer for one check: `/readyz/{check}`."""


def drains(group: str) -> bool:
    """Whether draining shows in this group's state (liveness never; startup is a latch)."""
    return group in (READINESS, HEALTH)


class Patterns(Protocol):
    """A group's `include`/`exclude` shell patterns (config.GroupSettings)."""

    @property
    def include(self) -> list[str]: ...

    @property
    def exclude(self) -> list[str]: ...


class Member(Protocol):
    """What membership needs to know of a check spec."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def critical(self) -> bool: ...

    @property
    def startup(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Membership:
    """Which checks each group holds (config order), and the reverse."""

    members: Mapping[str, tuple[str, ...]]
    groups_of: Mapping[str, tuple[str, ...]]

    @classmethod
    def of(
        cls,
        checks: Sequence[Member],
        readiness: Patterns,
        liveness: Patterns | None,
        implicit: str | None = None,
    ) -> Membership:
        """`implicit`: the `loop` check added because the config has none (config.py); it
        joins liveness and health, not readiness: the operator did not ask for it there.

        Startup: when healthd supervises the app it is the app's container, and the kubelet
        restarts a container whose startupProbe keeps failing; so the startup group holds
        the service's own checks (the `process` check, checks marked `startup: true`), not
        its dependencies: a database down at deploy time must not restart the app (§16).
        """
        names = [c.name for c in checks]
        ready = _matching([n for n in names if n != implicit], readiness)
        own = [c.name for c in checks if c.kind in ("loop", "process")]
        live = _matching(names, liveness) if liveness else own
        critical = {c.name for c in checks if c.critical}
        marked = [c.name for c in checks if c.startup or c.kind == "process"]
        members = {
            READINESS: tuple(ready),
            LIVENESS: tuple(live),
            STARTUP: tuple(marked or (n for n in ready if n in critical)),
            HEALTH: tuple(names),
        }
        sets = {g: set(m) for g, m in members.items()}
        groups_of = {n: tuple(g for g in GROUPS if n in sets[g]) for n in names}
        return cls(members, groups_of)


def _matching(names: list[str], patterns: Patterns) -> list[str]:
    return [
        n
        for n in names
        if any(fnmatch.fnmatchcase(n, p) for p in patterns.include)
        and not any(fnmatch.fnmatchcase(n, p) for p in patterns.exclude)
    ]
