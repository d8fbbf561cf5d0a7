"""DESIGN §16's proof, short: two pods behind a real HAProxy, 100 connections, pod 1
terminated mid-run. Supervised (`healthd run -- app`): 0 failed requests, exit 0. The
naive pod (app and sidecar signalled together) in the same rig is the control: it loses
requests, so the rig can see a loss. bench/pod_shutdown.py runs it at 1,000 connections.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import need
from tests.podrig import run

pytestmark = pytest.mark.slow

CONNECTIONS, DURATION, STOP_AT, DRAIN = 100, 6.0, 1.5, 2.0


async def test_a_supervised_pod_loses_no_request_through_haproxy(tmp_path: Path) -> None:
    """Supervised: 0 non-2xx, 0 socket errors, healthd exits 0; naive: some are lost."""
    haproxy = need("haproxy", "as the load balancer", ["/usr/sbin/haproxy"])
    wrk = need("wrk", "to load the pods")
    results = {}
    for mode in ("supervised", "naive"):
        results[mode] = await asyncio.to_thread(
            run, mode, tmp_path / mode, connections=CONNECTIONS, duration=DURATION,
            stop_at=STOP_AT, drain=DRAIN, haproxy=haproxy, wrk=wrk,
        )  # fmt: skip
    supervised, naive = results["supervised"], results["naive"]
    assert supervised.requests > 1000, supervised.wrk
    assert supervised.failed == 0, supervised.wrk
    assert supervised.codes == {"healthd": 0}
    assert supervised.stopped_s >= DRAIN  # the app was stopped after the drain, not before
    assert naive.failed > 0, naive.wrk  # the control: this rig does see lost requests


async def test_an_embedded_aiohttp_pod_loses_no_request_through_haproxy(tmp_path: Path) -> None:
    """healthd.aiohttp embedded (HAProxy checks the app's own /readyz): 0 failed, exit 0,
    and the app kept serving through the drain."""
    haproxy = need("haproxy", "as the load balancer", ["/usr/sbin/haproxy"])
    wrk = need("wrk", "to load the pods")
    embedded = await asyncio.to_thread(
        run, "embedded", tmp_path, connections=CONNECTIONS, duration=DURATION,
        stop_at=STOP_AT, drain=DRAIN, haproxy=haproxy, wrk=wrk,
    )  # fmt: skip
    assert embedded.requests > 1000, embedded.wrk
    assert embedded.failed == 0, embedded.wrk
    assert embedded.codes == {"app": 0}
    assert embedded.stopped_s >= DRAIN
    log = (tmp_path / "pod1.log").read_text()
    assert "exit: SIGTERM; draining " in log
    assert "(0 cut)" in log
