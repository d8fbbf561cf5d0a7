"""What the fleet shows outside (reference §14): GET /admin/fleet's body, its summary in
/admin/state and the SIGUSR1 dump, and the gauges.

All of it reads the agent's in-memory view and decisions; none of it calls etcd.
"""

from __future__ import annotations

from typing import Any

from healthd.fleet.agent import Fleet
from healthd.fleet.settings import FleetSettings
from healthd.model import State
from healthd.observers.metrics import Metrics
from healthd.store import Store


def create_fleet(
    settings: FleetSettings | None, store: Store, metrics: Metrics | None
) -> Fleet | None:
    """The daemon's fleet agent (None without `fleet:`), its gauges registered."""
    if settings is None:
        return None
    fleet = Fleet(settings, store)
    if metrics is not None:
        metrics.gauge(
            "healthd_fleet_instances", "live instances of this service by readiness state",
            ["state"], lambda: _instances(fleet),
        )  # fmt: skip
        metrics.gauge(
            "healthd_fleet_panic", "1 while the panic rule holds the shared check non-critical",
            ["check"], lambda: _panic(fleet),
        )  # fmt: skip
        metrics.gauge(
            "healthd_fleet_connected", "1 while etcd answers and the fleet view is fresh",
            [], lambda: _connected(fleet),
        )  # fmt: skip
    return fleet


def describe(fleet: Fleet) -> dict[str, Any]:
    """GET /admin/fleet."""
    return {
        "service": fleet.settings.service,
        "instance": fleet.me,
        "connected": fleet.connected,
        "problem": fleet.problem or None,
        "endpoints": fleet.settings.endpoints,
        "ttl_ms": round(fleet.settings.ttl * 1000),
        "settle_ms": round(fleet.rule.settle * 1000),
        "panic_threshold": f"{fleet.settings.panic_threshold * 100:g}%",
        "max_draining": fleet.settings.max_draining,
        "instances": {n: r.view() for n, r in sorted(fleet.view.reports.items())},
        "slots": {str(n): h for n, h in sorted(fleet.view.slots.items())},
        "slot": fleet.slot,
        "rules": {
            n: {"rule": d.rule, "failing": d.failing, "live": d.live, "reason": d.reason}
            for n, d in sorted(fleet.decisions.items())
        },
    }


def summary(fleet: Fleet) -> dict[str, Any]:
    """The fleet's part of /admin/state and the SIGUSR1 dump: short, whatever its size."""
    return {
        "connected": fleet.connected,
        "problem": fleet.problem or None,
        "instances": len(fleet.view.reports),
        "slot": fleet.slot,
        "rules": {n: d.rule for n, d in sorted(fleet.decisions.items())},
    }


def _instances(fleet: Fleet) -> dict[tuple[str, ...], float]:
    counts = dict.fromkeys((s.value for s in State), 0.0)
    if fleet.connected:
        for report in fleet.view.reports.values():
            counts[report.state] = counts.get(report.state, 0.0) + 1
    return {(state,): n for state, n in counts.items()}


def _panic(fleet: Fleet) -> dict[tuple[str, ...], float]:
    return {(n,): float(n in fleet.decisions and fleet.decisions[n].panic) for n in fleet.shared()}


def _connected(fleet: Fleet) -> dict[tuple[str, ...], float]:
    return {(): float(fleet.connected)}
