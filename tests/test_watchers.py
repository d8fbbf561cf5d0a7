"""Watchers: one limit over SSE and gRPC streams, exported as healthd_watchers{transport}."""

from __future__ import annotations

from prometheus_client import generate_latest

from healthd.observers.metrics import Metrics
from healthd.watchers import Watchers


def test_limit_is_shared_by_transports() -> None:
    watchers = Watchers(limit=2)
    assert watchers.enter("sse")
    assert watchers.enter("grpc")
    assert not watchers.enter("sse")  # full: the handler answers 503
    watchers.leave("grpc")
    assert watchers.enter("sse")
    assert watchers.open == {"sse": 2, "grpc": 0}


def test_gauge_is_read_at_scrape_time() -> None:
    metrics, watchers = Metrics(), Watchers(limit=64)
    metrics.gauge("healthd_watchers", "open streams", ["transport"], watchers.gauge)
    watchers.enter("sse")
    text = generate_latest(metrics.registry).decode()
    assert 'healthd_watchers{transport="sse"} 1.0' in text
    assert 'healthd_watchers{transport="grpc"} 0.0' in text


def test_close_tells_every_stream() -> None:
    watchers = Watchers(limit=1)
    assert not watchers.closed.is_set()
    watchers.close()
    assert watchers.closed.is_set()
