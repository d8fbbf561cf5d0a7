"""Prometheus metrics (DESIGN §7): names, types and labels are part of the contract.

Two halves, one injected `CollectorRegistry`:
- `StateCollector` reads the store's snapshot at scrape time (group states, check statuses,
  draining) and the daemon's lag monitor, the shape of prometheus_client's `gc_collector.py`;
- `Metrics` is a store observer feeding counters and histograms from results, plus two
  plain calls: `probe(...)` from the probe handlers and `reload(ok)` from the daemon.

Label values are config names and enums only, never error text. `probe` runs on every
probe request, so probe counts and histograms are plain integers kept by `ProbeStats`
(no lock, no labelled child) and turned into metric families at scrape time.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, disable_created_metrics
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
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
from healthd.store import Store

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


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


class _Histogram:
    """Bucket counts and a sum, in plain numbers (one event loop writes them)."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # the last slot is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(BUCKETS, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, count in zip([*map(str, BUCKETS), "+Inf"], self.counts, strict=True):
            running += count
            out.append((bound, float(running)))
        return out


class ProbeStats(Collector):
    """healthd_probe_requests_total, healthd_probe_duration_seconds and
    healthd_deadline_budget_seconds: counted cheaply per probe, exported at scrape time.

    `observe` only appends to a list; the list is folded into counts at scrape time or
    when it reaches `BATCH` (so memory stays bounded without a scrape). Probes, folds
    and scrapes all run on the event loop's thread (the /metrics handler is synchronous).
    """

    BATCH = 4096

    def __init__(self) -> None:
        self.codes: dict[tuple[str, int], int] = {}
        self.durations: dict[str, _Histogram] = {}
        self.budgets: dict[str, _Histogram] = {}
        self._pending: list[tuple[str, int, float, float]] = []

    def observe(self, endpoint: str, code: int, duration: float, budget: float) -> None:
        pending = self._pending
        pending.append((endpoint, code, duration, budget))
        if len(pending) >= self.BATCH:
            self.fold()

    def fold(self) -> None:
        """Move pending observations into the counts."""
        pending, self._pending = self._pending, []
        codes, durations, budgets = self.codes, self.durations, self.budgets
        for endpoint, code, duration, budget in pending:
            key = (endpoint, code)
            codes[key] = codes.get(key, 0) + 1
            hist = durations.get(endpoint)
            if hist is None:
                hist = durations[endpoint] = _Histogram()
                budgets[endpoint] = _Histogram()
            hist.observe(duration)
            budgets[endpoint].observe(budget)

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        self.fold()
        requests, durations, budgets = families = self._families()
        for (endpoint, code), count in list(self.codes.items()):
            requests.add_metric([endpoint, str(code)], float(count))
        for family, hists in ((durations, self.durations), (budgets, self.budgets)):
            for endpoint, hist in list(hists.items()):
                family.add_metric([endpoint], hist.cumulative(), hist.total)
        return families

    @staticmethod
    def _families() -> tuple[CounterMetricFamily, HistogramMetricFamily, HistogramMetricFamily]:
        return (
            CounterMetricFamily(
                "healthd_probe_requests", "probe requests answered, by status code",
                labels=["endpoint", "code"],
            ),
            HistogramMetricFamily(
                "healthd_probe_duration_seconds", "time to answer a probe", labels=["endpoint"]
            ),
            HistogramMetricFamily(
                "healthd_deadline_budget_seconds", "budget the probe's caller gave",
                labels=["endpoint"],
            ),
        )  # fmt: skip


class Counted(Collector):
    """A counter kept as a plain number by its owner, exported at scrape time."""

    def __init__(self, name: str, documentation: str, read: Callable[[], int]) -> None:
        self.name, self.documentation, self.read = name, documentation, read

    def collect(self) -> Iterable[Metric]:
        yield CounterMetricFamily(self.name, self.documentation, value=float(self.read()))


class Gauged(Collector):
    """A labelled gauge kept by its owner ({label values: value}), exported at scrape time."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labels: list[str],
        read: Callable[[], Mapping[tuple[str, ...], float]],
    ) -> None:
        self.name, self.documentation, self.labels, self.read = name, documentation, labels, read

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labels)
        for values, value in self.read().items():
            family.add_metric(list(values), value)
        yield family


class RunStats(Collector):
    """healthd_check_duration_seconds and healthd_check_runs_total in plain numbers: one
    `observe` per check run (no lock, no labelled child), families built at scrape time."""

    def __init__(self) -> None:
        self.durations: dict[tuple[str, str], _Histogram] = {}
        self.runs: dict[tuple[str, str, str], int] = {}
        self.attempts: dict[tuple[str, str], int] = {}

    def observe(
        self, name: str, kind: str, outcome: str, duration: float, attempts: int = 1
    ) -> None:
        key = (name, kind)
        hist = self.durations.get(key)
        if hist is None:
            hist = self.durations[key] = _Histogram()
        hist.observe(duration)
        self.attempts[key] = self.attempts.get(key, 0) + attempts
        run_key = (name, kind, outcome)
        self.runs[run_key] = self.runs.get(run_key, 0) + 1

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        durations, runs, attempts = families = self._families()
        for labels, hist in list(self.durations.items()):
            durations.add_metric(list(labels), hist.cumulative(), hist.total)
        for run_labels, count in list(self.runs.items()):
            runs.add_metric(list(run_labels), float(count))
        for labels, count in list(self.attempts.items()):
            attempts.add_metric(list(labels), float(count))
        return families

    @staticmethod
    def _families() -> tuple[HistogramMetricFamily, CounterMetricFamily, CounterMetricFamily]:
        return (
            HistogramMetricFamily(
                "healthd_check_duration_seconds", "duration of check runs",
                labels=["check", "kind"],
            ),
            CounterMetricFamily(
                "healthd_check_runs", "check runs by outcome", labels=["check", "kind", "outcome"]
            ),
            CounterMetricFamily(
                "healthd_check_attempts", "attempts within check runs, retries included",
                labels=["check", "kind"],
            ),
        )  # fmt: skip


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
