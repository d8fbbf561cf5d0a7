"""The inbound budget (DESIGN §3): one precedence list, and the hot path's fast answer."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from healthd.deadline import Budgets, inbound_budget
from healthd.errors import BudgetError

DEFAULT, MAXIMUM, OFFSET = 2.0, 30.0, 0.5
CASES = [
    ({}, {}, DEFAULT),
    ({"timeout": "250ms"}, {"X-Request-Timeout-Ms": "900"}, 0.25),
    ({}, {"X-Request-Timeout-Ms": "900", "grpc-timeout": "100m"}, 0.9),
    ({}, {"grpc-timeout": "100m", "X-Prometheus-Scrape-Timeout-Seconds": "3"}, 0.1),
    ({}, {"X-Prometheus-Scrape-Timeout-Seconds": "3", "x-envoy-expected-rq-timeout-ms": "7"}, 2.5),
    ({}, {"x-envoy-expected-rq-timeout-ms": "700"}, 0.7),
    ({}, {"X-Request-Timeout-Ms": "99000"}, MAXIMUM),
]


@pytest.mark.parametrize(("query", "headers", "expected"), CASES)
def test_first_found_wins_and_max_caps(
    query: dict[str, str], headers: dict[str, str], expected: float
) -> None:
    """?timeout, then X-Request-Timeout-Ms, grpc-timeout, Prometheus (minus offset), Envoy."""
    got = inbound_budget(
        query, CIMultiDict(headers), default=DEFAULT, maximum=MAXIMUM, offset=OFFSET
    )
    assert got == pytest.approx(expected)
    assert Budgets(DEFAULT, MAXIMUM, OFFSET).parse(query, CIMultiDict(headers)) == got


@pytest.mark.parametrize(("query", "headers", "expected"), [c for c in CASES if not c[0]])
def test_fast_path_agrees_once_a_text_was_parsed(
    query: dict[str, str], headers: dict[str, str], expected: float
) -> None:
    """The fast path answers the default at once, a header text after parsing it once."""
    budgets = Budgets(DEFAULT, MAXIMUM, OFFSET)
    first = budgets.fast(CIMultiDict(headers))
    assert first == (DEFAULT if not headers else None)
    budgets.parse(query, CIMultiDict(headers))
    assert budgets.fast(CIMultiDict(headers)) == pytest.approx(expected)


def test_fast_path_never_answers_a_bad_value() -> None:
    """An unparseable header is never remembered: the fast path leaves it to the 400."""
    budgets = Budgets(DEFAULT, MAXIMUM, OFFSET)
    bad = CIMultiDict({"X-Request-Timeout-Ms": "soon"})
    with pytest.raises(BudgetError, match="X-Request-Timeout-Ms"):
        budgets.parse({}, bad)
    assert budgets.fast(bad) is None
