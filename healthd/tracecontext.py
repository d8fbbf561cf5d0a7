"""W3C trace context in and out: the one place it is extracted and injected (reference §8, §15).

`continued(carrier)` continues an incoming trace (HTTP headers, gRPC metadata, any
mapping); `inject(carrier)` adds ours to an onward call (HTTP and remote checks). With no
tracer provider set these are no-ops of the OpenTelemetry API.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, MutableMapping

from opentelemetry import context, propagate


@contextlib.contextmanager
def continued(carrier: Mapping[str, str]) -> Iterator[None]:
    """Within the block, spans continue the trace `carrier` names (`traceparent`)."""
    token = context.attach(propagate.extract(carrier))
    try:
        yield
    finally:
        context.detach(token)


def inject(carrier: MutableMapping[str, str]) -> None:
    """Add the current trace context (`traceparent`) to an onward call's headers."""
    propagate.inject(carrier)
