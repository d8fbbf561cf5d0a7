"""The startup group agrees with the state table (issue 21): before its latch closes it is
`unhealthy` while a critical member fails and `unknown` while one has no result yet; once
every member passed it is `healthy` for good (Kubernetes startupProbe semantics)."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from healthd import Deadline, Health, checks
from healthd.model import State
from tests.procs import Healthd


class Switch:
    """An in-process dependency whose answer the test sets."""

    def __init__(self) -> None:
        self.up = False

    async def __call__(self, deadline: Deadline) -> str:
        if not self.up:
            raise ConnectionRefusedError("connection refused")
        return "ok"


async def test_startup_states_before_and_after_the_latch() -> None:
    """unknown (no result) → unhealthy (the critical dependency fails) → healthy (it
    passed once) → still healthy when it fails again, while readiness follows it."""
    db = Switch()
    health = Health(checks=[checks.Func("db", db, interval="1h", timeout="1s")])
    async with health:
        assert health.store.current("startup") is State.UNKNOWN
        snap = await health.evaluate("startup", Deadline.after(0.5), fresh=True)
        assert snap.state is State.UNHEALTHY
        db.up = True
        assert (await health.evaluate("startup", Deadline.after(0.5), fresh=True)).state is (
            State.HEALTHY
        )
        db.up = False
        assert (await health.evaluate("readiness", Deadline.after(0.5), fresh=True)).state is (
            State.UNHEALTHY
        )
        assert health.store.current("startup") is State.HEALTHY  # latched


async def test_startupz_says_unhealthy_while_a_critical_dependency_is_down(
    tmp_path: Path, refused_port: int
) -> None:
    """A real daemon whose critical tcp dependency refuses: `/startupz` answers 503 with
    `"status": "unhealthy"`, the same word `/readyz` uses, not `unknown`."""
    config = "server: {listen: '127.0.0.1:{port}', show_details: always}\n"
    config += f"checks:\n  - {{name: db, kind: tcp, address: '127.0.0.1:{refused_port}'}}\n"
    async with Healthd(tmp_path, config) as h, aiohttp.ClientSession() as session:
        for path in ("/readyz?fresh=1", "/startupz"):
            async with session.get(h.url(path)) as resp:
                assert resp.status == 503
                assert (await resp.json())["status"] == "unhealthy", path
