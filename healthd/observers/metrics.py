"""Prometheus metrics (reference §7): names, types and labels are part of the contract.

Two halves, one injected `CollectorRegistry`:
- `StateCollector` reads the store's snapshot at scrape time (group states, check statuses,
  draining) and the daemon's lag monitor, the shape of prometheus_client's `gc_collector.py`;
- `Metrics` is a store observer feeding counters and histograms from results, plus two
  plain calls: `probe(...)` from the probe handlers and `reload(ok)` from the daemon.

Label values are config names and enums only, never error text. `probe` runs on every
probe request, so probe counts and histograms are plain integers kept by `ProbeStats`
(no lock, no labelled child) and turned into metric families at scrape time (plain.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, disable_created_metrics
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.core import (
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from healthd import __version__
from healthd.checks.base import SpecBase
from healthd.events import Observer
from healthd.groups import HEALTH
from healthd.lag import LagMonitor
from healthd.model import CheckResult, CheckState, State, Status
from healthd.observers.plain import Counted, CountedBy, Gauged, ProbeStats, RunStats
from healthd.store import Store


class StateCollector(Collector):
    """Gauges computed from the store's snapshot at scrape time."""

    def __init__(self, store: Store, lag: LagMonitor, last_success: dict[str, float]) -> None:
        self.store, self.lag = store, lag
        self.last_success = last_success

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        families = self._families()
        state, status, up, last, draining, lag, info, flapping = families
        snapshot = self.store.snapshot(HEALTH)
        for group, current in snapshot.groups.items():
            for s in State:
                state.add_metric([group, s.value], 1.0 if s is current else 0.0)
        checks: tuple[CheckState, ...] = snapshot.checks
        for check in checks:
            for st in Status:
                status.add_metric([check.name, check.kind, st.value], float(st is check.status))
            healthy = check.status in (Status.PASS, Status.WARN)
            up.add_metric([check.name, check.kind, str(check.critical).lower()], float(healthy))
            flapping.add_metric([check.name], float(check.flapping))
            when = self.last_success.get(check.name)
            if when is not None:
                last.add_metric([check.name], when)
        draining.add_metric([], float(snapshot.draining))
        lag.add_metric([], self.lag.last)
        info.add_metric([__version__], 1.0)
        return families

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily(
                "healthd_state", "1 for the group's current state", labels=["group", "state"]
            ),
            GaugeMetricFamily(
                "healthd_check_status",
                "1 for the check's current status (after thresholds and freshness)",
                labels=["check", "kind", "status"],
            ),
            GaugeMetricFamily(
                "healthd_check_up",
                "1 when the check passes or warns, 0 when failing or unknown",
                labels=["check", "kind", "critical"],
            ),
            GaugeMetricFamily(
                "healthd_check_last_success_timestamp_seconds",
                "Unix time of the check's last pass or warn",
                labels=["check"],
            ),
            GaugeMetricFamily("healthd_draining", "1 while draining"),
            GaugeMetricFamily("healthd_event_loop_lag_seconds", "latest measured event-loop lag"),
            GaugeMetricFamily("healthd_build_info", "healthd's version", labels=["version"]),
            GaugeMetricFamily(
                "healthd_check_flapping",
                "1 while the check is flapping (held at fail)",
                labels=["check"],
            ),
        ]


class Metrics(Observer):
    """Counters and histograms fed by the store and by plain calls, plus the scrape-time
    collector."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # No `_created` series; a process-wide switch in the client.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry if registry is not None else CollectorRegistry()
        reg = self.registry
        ProcessCollector(registry=reg)
        GCCollector(registry=reg)
        PlatformCollector(registry=reg)
        self.check_runs = RunStats()
        reg.register(self.check_runs)
        self.probes = ProbeStats()
        reg.register(self.probes)
        self.probe = self.probes.observe  # the hot path calls this: one bound method, no hop
        self.reloads = Counter(
            "healthd_config_reloads", "configuration reloads by result", ["result"], registry=reg
        )
        for result in ("success", "failure"):
            self.reloads.labels(result)
        self.last_success: dict[str, float] = {}
        self.collector: StateCollector | None = None

    def bind(self, store: Store, lag: LagMonitor) -> None:
        """Register the scrape-time collector for `store` (once)."""
        if self.collector is None:
            self.collector = StateCollector(store, lag, self.last_success)
            self.registry.register(self.collector)

    def count(self, name: str, documentation: str, read: Callable[[], int]) -> None:
        """Export `read()` as the counter `name` (`_total` is added)."""
        self.registry.register(Counted(name, documentation, read))

    def count_by(
        self,
        name: str,
        documentation: str,
        labels: list[str],
        read: Callable[[], Mapping[tuple[str, ...], float]],
    ) -> None:
        """Export `read()` ({label values: count}) as the labelled counter `name`."""
        self.registry.register(CountedBy(name, documentation, labels, read))

    def gauge(
        self,
        name: str,
        documentation: str,
        labels: list[str],
        read: Callable[[], Mapping[tuple[str, ...], float]],
    ) -> None:
        """Export `read()` ({label values: value}) as the gauge `name`, read at scrape time."""
        self.registry.register(Gauged(name, documentation, labels, read))

    def route(self) -> web.RouteDef:
        """`GET /metrics`: text format, or OpenMetrics when `Accept` asks for it."""
        return web.get("/metrics", make_aiohttp_handler(self.registry))

    # --- what the store emits ---------------------------------------------------------------

    def on_result(self, spec: SpecBase, result: CheckResult, state: CheckState) -> None:
        if result.skipped:
            return  # not a run: the skipped status shows in healthd_check_status
        self.check_runs.observe(
            spec.name, spec.kind, result.outcome.value, result.duration, result.attempts
        )
        if result.outcome.good:
            self.last_success[spec.name] = result.observed_at

    def reload(self, ok: bool) -> None:
        """A config reload was attempted (ok=False: the file was invalid, nothing changed)."""
        self.reloads.labels("success" if ok else "failure").inc()
