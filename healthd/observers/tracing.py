"""OpenTelemetry traces (reference §8): SDK set-up from `OTEL_*`, trace continuation, sampling.

The runs open `healthd.evaluate` and `healthd.check` spans through the API with the
tracer they are given (spans.py names them); this module builds that tracer's provider
once at start-up, for the shell that owns the process:

    OTEL_TRACES_EXPORTER=none (or unset) → no SDK at all, the API's no-op tracer
                         console        → one JSON span a line on stdout
                         otlp           → OTLP/HTTP, batched (extra `otlp`)

`tracing.sample_passing` drops a share of routine passing background runs. A head sampler
cannot know a run's outcome, so `OutcomeSampler` decides when the span ends: failures,
timeouts and warns (slow runs) are always exported, and the span still existed while the
check ran, so the `traceparent` it sent onward was a real one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from aiohttp import web
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)

from healthd import spans, tracecontext
from healthd.errors import ConfigError, install
from healthd.web.base import Handler

EXPORTERS = ("otlp", "console", "none")
_MAX_TRACE_ID = (1 << 64) - 1


class OutcomeSampler(SpanProcessor):
    """Forwards ended spans to `inner`, dropping a share of passing background check runs.

    The keep decision uses the trace id's low 64 bits (like `TraceIdRatioBased`), so it is
    deterministic per trace: `sample_passing=0` drops them all, `1` keeps them all.
    """

    def __init__(self, inner: SpanProcessor, sample_passing: float) -> None:
        self.inner = inner
        self.bound = round(sample_passing * _MAX_TRACE_ID)
        self.sample_passing = sample_passing

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.inner.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        if self.sample_passing < 1.0 and droppable(span):
            ctx = span.get_span_context()
            if ctx is None or (ctx.trace_id & _MAX_TRACE_ID) >= self.bound:
                return
        self.inner.on_end(span)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def droppable(span: ReadableSpan) -> bool:
    """A routine run: a background `healthd.check` that passed."""
    attrs = span.attributes or {}
    return (
        span.name == spans.CHECK
        and attrs.get(spans.BACKGROUND) is True
        and attrs.get(spans.OUTCOME) == "pass"
    )


def one_line(span: ReadableSpan) -> str:
    """Console format: one JSON object per line (the SDK default spreads a span over many)."""
    return str(span.to_json(indent=None)) + "\n"


def exporters(env: Mapping[str, str]) -> list[str]:
    """The names in `OTEL_TRACES_EXPORTER` (comma-separated; unset means none)."""
    raw = env.get("OTEL_TRACES_EXPORTER", "none")
    names = [n.strip().lower() for n in raw.split(",") if n.strip()]
    for name in names:
        if name not in EXPORTERS:
            raise ConfigError(
                f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} (otlp, console, none)"
            )
    return [n for n in names if n != "none"]


def _otlp() -> SpanExporter:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise ConfigError(f"OTEL_TRACES_EXPORTER=otlp needs: {install('otlp')}") from None
    return OTLPSpanExporter()  # endpoint, headers, timeout: from OTEL_EXPORTER_OTLP_* variables


def provider(
    sample_passing: float = 1.0,
    env: Mapping[str, str] | None = None,
    extra: SpanProcessor | None = None,
) -> TracerProvider | None:
    """A TracerProvider per the `OTEL_*` variables, or None when no exporter is asked for.

    `extra` adds a processor (tests pass `SimpleSpanProcessor(InMemorySpanExporter())`).
    """
    env = os.environ if env is None else env
    processors: list[SpanProcessor] = []
    for name in exporters(env):
        if name == "console":
            processors.append(
                SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stdout, formatter=one_line))
            )
        else:
            processors.append(BatchSpanProcessor(_otlp()))
    if extra is not None:
        processors.append(extra)
    if not processors:
        return None
    named = "OTEL_SERVICE_NAME" in env or "service.name" in env.get("OTEL_RESOURCE_ATTRIBUTES", "")
    tracer_provider = TracerProvider(
        resource=Resource.create({} if named else {"service.name": "healthd"})
    )
    for processor in processors:
        tracer_provider.add_span_processor(OutcomeSampler(processor, sample_passing))
    return tracer_provider


@web.middleware
async def continue_trace(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Continue the caller's trace (`traceparent`): our spans become children of its span."""
    with tracecontext.continued(request.headers):
        return await handler(request)
