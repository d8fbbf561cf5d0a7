"""Observers: metrics, traces and logs, each reacting to what the store records.

`setup(settings)` builds what a shell sets up once per process (the OpenTelemetry SDK
from OTEL_* variables, the metrics registry) and hands the metrics and the tracer to its
`Health`, which owns the observers; the shell calls `shutdown()` last, so telemetry is
flushed before exit.

    metrics.py  Prometheus: counters/histograms from results and probes + a scrape-time collector
    tracing.py  OpenTelemetry SDK from OTEL_* variables, trace continuation, outcome sampling
    log.py      one structured line per check/group transition
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Middleware
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.trace import Tracer
from prometheus_client import CollectorRegistry

from healthd.config import Settings
from healthd.events import Observer
from healthd.observers import tracing
from healthd.observers.log import TransitionLog
from healthd.observers.metrics import Metrics


@dataclass(slots=True)
class Telemetry:
    """What a shell wires in: the metrics (for its Health), extra probe routes, a tracer,
    trace continuation, and the flush."""

    observers: list[Observer] = field(default_factory=list)  # the transition log
    routes: list[web.RouteDef] = field(default_factory=list)
    tracer: Tracer | None = None
    middlewares: list[Middleware] = field(default_factory=list)
    metrics: Metrics | None = None
    provider: TracerProvider | None = None

    def shutdown(self) -> None:
        """Flush and stop exporters (called once, last thing before exit)."""
        if self.provider is not None:
            self.provider.force_flush()
            self.provider.shutdown()
            self.provider = None


def setup(
    settings: Settings,
    *,
    registry: CollectorRegistry | None = None,
    env: Mapping[str, str] | None = None,
    span_processor: SpanProcessor | None = None,
) -> Telemetry:
    """The telemetry for a daemon running `settings`.

    Tests inject a fresh `registry` and an in-memory `span_processor`; the daemon passes
    neither, and tracing then follows `OTEL_TRACES_EXPORTER` (none when unset).
    """
    metrics = Metrics(registry)
    provider = tracing.provider(settings.tracing.sample_passing, env, span_processor)
    return Telemetry(
        observers=[TransitionLog()],
        routes=[metrics.route()],
        tracer=provider.get_tracer("healthd") if provider is not None else None,
        middlewares=[tracing.continue_trace] if provider is not None else [],
        metrics=metrics,
        provider=provider,
    )
