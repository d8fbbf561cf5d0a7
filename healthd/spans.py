"""The spans healthd opens (reference §8), through the OpenTelemetry API only: their names and
attributes live here, for the runs that open them and the sampler that reads them
(observers/tracing.py). With no tracer (tracing off) the runs open none at all.

    healthd.evaluate   healthd.group, healthd.deadline_ms, healthd.state
      healthd.check    healthd.check.name, .kind, .background, .timeout_ms, .outcome,
                       .reason; error status on fail and timeout
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from opentelemetry.trace import Span, StatusCode, Tracer

from healthd.model import CheckResult, State

EVALUATE = "healthd.evaluate"
CHECK = "healthd.check"
BACKGROUND = "healthd.check.background"
OUTCOME = "healthd.check.outcome"


@contextlib.contextmanager
def evaluation(tracer: Tracer, group: str, budget: float) -> Iterator[Span]:
    """The span of one evaluation of `group` with `budget` seconds; `evaluated` ends it."""
    attributes: dict[str, str | float] = {
        "healthd.group": group,
        "healthd.deadline_ms": round(budget * 1000, 3),
    }
    with tracer.start_as_current_span(EVALUATE, attributes=attributes) as span:
        yield span


def evaluated(span: Span, state: State) -> None:
    span.set_attribute("healthd.state", state.value)


@contextlib.contextmanager
def check_run(tracer: Tracer, name: str, kind: str, background: bool) -> Iterator[Span]:
    """The span of one run of a check. Open it outside the run's timeout: inside, the
    CancelledError is a BaseException and the span would record no error (FIELD-NOTES)."""
    with tracer.start_as_current_span(
        CHECK,
        attributes={"healthd.check.name": name, "healthd.check.kind": kind, BACKGROUND: background},
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        yield span


def ran(span: Span, result: CheckResult) -> None:
    """What the run gave: its budget, outcome and reason; an error status unless good."""
    span.set_attribute("healthd.check.timeout_ms", round(result.timeout * 1000, 3))
    span.set_attribute(OUTCOME, result.outcome.value)
    span.set_attribute("healthd.check.reason", result.reason.value)
    if not result.outcome.good:
        span.set_status(StatusCode.ERROR, result.message)
