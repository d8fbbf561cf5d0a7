"""Soak, short: 34 fresh rounds = 204 runs of every kind (a third refused or timing out)
against the real local services, through a real `healthd run`.

Bounds (sized for a loaded 2-core machine): after the runs the daemon's open fds are at most
2 above the fewest seen during the runs, and its tasks no more than the fewest seen (a fd
or task left per round would add 34; the first round may hold a few more); RSS grows by less than
8 MB from the middle to the end (a leak of one object per run would show: 204 runs x 90
checks); nothing is in flight; every server's connections from our checks are back to their
baseline. bench/soak.py runs the same rig 10,000 times a kind.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import SERVICES
from tests.soakrig import PER_KIND, is_bad, soak

pytestmark = [pytest.mark.slow, *(pytest.mark.service(name) for name in SERVICES)]

ROUNDS = 34
RSS_GROWTH_MB = 8.0


async def test_soak_stays_flat_and_leaves_no_connections(tmp_path: Path) -> None:
    """Every kind 204 times: fds, tasks and RSS flat; servers' connections back to baseline."""
    report = await soak(tmp_path, ROUNDS, samples=2, log=lambda _: None)
    runs = {kind: sum(c.values()) for kind, c in report.outcomes.items()}
    assert set(runs.values()) == {ROUNDS * PER_KIND}, runs
    for name, outcomes in report.by_check.items():
        good = outcomes["pass"] + outcomes["warn"]
        if is_bad(name):
            assert good == 0, (name, outcomes)
        else:  # a loaded machine may time out a good run now and then, not often
            assert good >= 0.9 * ROUNDS, (name, outcomes)
    *during, end = report.usage
    middle = during[len(during) // 2]
    assert end.fds <= min(u.fds for u in during) + 2, report.usage  # one a round would add 34
    assert end.tasks <= min(u.tasks for u in during), report.usage
    assert end.rss_mb - middle.rss_mb < RSS_GROWTH_MB, report.usage
    assert report.inflight_at_end == {}
    leaks = {n: c for n, c in report.connections.items() if c[1] != c[0]}
    assert not leaks, report.connections
