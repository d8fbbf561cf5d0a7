"""Metrics kept as plain numbers by their owners and exported at scrape time (reference §7).

A probe or a check run must not pay for prometheus_client's locks and labelled children
on every call: these collectors count in plain dicts and integers (one event loop writes
them) and build their metric families when /metrics is scraped.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from typing import ClassVar

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


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
        self.codes: dict[tuple[str, int | str], int] = {}
        self.durations: dict[str, _Histogram] = {}
        self.budgets: dict[str, _Histogram] = {}
        self._pending: list[tuple[str, int | str, float, float]] = []

    def observe(self, endpoint: str, code: int | str, duration: float, budget: float) -> None:
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
                "healthd_probe_requests", "probe requests answered, by HTTP or gRPC status",
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

    family: ClassVar[type[GaugeMetricFamily | CounterMetricFamily]] = GaugeMetricFamily

    def __init__(
        self,
        name: str,
        documentation: str,
        labels: list[str],
        read: Callable[[], Mapping[tuple[str, ...], float]],
    ) -> None:
        self.name, self.documentation, self.labels, self.read = name, documentation, labels, read

    def collect(self) -> Iterable[Metric]:
        family = self.family(self.name, self.documentation, labels=self.labels)
        for values, value in self.read().items():
            family.add_metric(list(values), value)
        yield family


class CountedBy(Gauged):
    """A labelled counter kept by its owner ({label values: count}), exported at scrape time."""

    family = CounterMetricFamily


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
