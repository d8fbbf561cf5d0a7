"""Duration strings and inbound budgets (pure)."""

from __future__ import annotations

import pytest

from healthd.deadline import Deadline, inbound_budget, parse_grpc_timeout
from healthd.durations import format_duration, parse_duration
from healthd.errors import BudgetError
from healthd.testing import ManualClock


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("2s", 2.0), ("1m", 60.0), ("1m30s", 90.0), ("1.5s", 1.5), ("500us", 5e-4)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    """Durations with units parse to seconds."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "ms", "1x", "1s2", "-1s", "1 s x"])
def test_parse_duration_rejects(text: str) -> None:
    """Anything without a unit, or with trailing junk, is refused."""
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_format_duration_round_trips() -> None:
    """Formatting picks s for whole seconds and ms otherwise."""
    assert format_duration(2.0) == "2s"
    assert format_duration(0.25) == "250ms"
    assert parse_duration(format_duration(0.0125)) == pytest.approx(0.0125)


def test_deadline_child_takes_the_earlier() -> None:
    """A child deadline never outlives its parent, and remaining() never goes negative."""
    clock = ManualClock()
    parent = Deadline.after(1.0, clock)
    assert parent.child(5.0).at == parent.at
    assert parent.child(0.2).remaining() == pytest.approx(0.2)
    clock.advance(2.0)
    assert parent.remaining() == 0.0
    assert parent.expired


def test_deadline_headers_carry_remaining_ms() -> None:
    """Onward calls get the remaining budget in whole milliseconds."""
    clock = ManualClock()
    assert Deadline.after(0.4567, clock).headers() == {"X-Request-Timeout-Ms": "456"}


BUDGET = {"default": 2.0, "maximum": 30.0, "offset": 0.5}


@pytest.mark.parametrize(
    ("query", "headers", "expected"),
    [
        ({}, {}, 2.0),
        ({"timeout": "250ms"}, {"X-Request-Timeout-Ms": "900"}, 0.25),
        ({}, {"X-Request-Timeout-Ms": "900"}, 0.9),
        ({}, {"grpc-timeout": "250m"}, 0.25),
        ({}, {"grpc-timeout": "3S"}, 3.0),
        ({}, {"X-Prometheus-Scrape-Timeout-Seconds": "10"}, 9.5),
        ({}, {"X-Prometheus-Scrape-Timeout-Seconds": "0.2"}, 0.0),
        ({}, {"x-envoy-expected-rq-timeout-ms": "1500"}, 1.5),
        ({"timeout": "5m"}, {}, 30.0),
    ],
)
def test_inbound_budget_first_found_wins(
    query: dict[str, str], headers: dict[str, str], expected: float
) -> None:
    """The first budget source found wins, capped by deadline.max (DESIGN §3)."""
    assert inbound_budget(query, headers, **BUDGET) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("query", "headers", "message"),
    [
        ({"timeout": "soon"}, {}, "?timeout"),
        ({}, {"X-Request-Timeout-Ms": "abc"}, "X-Request-Timeout-Ms"),
        ({}, {"X-Request-Timeout-Ms": "-5"}, "non-negative"),
        ({}, {"X-Request-Timeout-Ms": "nan"}, "finite"),
        ({}, {"grpc-timeout": "250"}, "grpc-timeout"),
        ({}, {"grpc-timeout": "123456789m"}, "grpc-timeout"),
    ],
)
def test_inbound_budget_unparseable(
    query: dict[str, str], headers: dict[str, str], message: str
) -> None:
    """An unparseable budget is a BudgetError naming its source (→ 400)."""
    with pytest.raises(BudgetError, match=message.replace("?", r"\?")):
        inbound_budget(query, headers, **BUDGET)


def test_grpc_timeout_units() -> None:
    """All six gRPC timeout units are understood."""
    assert parse_grpc_timeout("1H") == 3600
    assert parse_grpc_timeout("2M") == 120
    assert parse_grpc_timeout("1000u") == pytest.approx(1e-3)
    assert parse_grpc_timeout("5000000n") == pytest.approx(5e-3)
