"""Reload (DESIGN §6): SIGHUP and POST /admin/reload; untouched checks keep their state."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from healthd.config import parse_settings
from healthd.lifecycle import Daemon
from healthd.observers import setup
from healthd.scheduler import FIRST_RUN_SPREAD
from tests.conftest import free_port
from tests.procs import Healthd
from tests.test_lifecycle import wait_line, wait_ready

TOKEN = "r3load-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HEAD = """
server: {listen: "127.0.0.1:{port}", admin_listen: "127.0.0.1:{admin_port}", token: TOKEN}
checks:
  - {name: loop, kind: loop, interval: 100ms, timeout: 50ms}
  - {name: steady, kind: tcp, address: "127.0.0.1:{port}", interval: 60s, timeout: 1s}
  - {name: app, kind: heartbeat, ttl: 60s, interval: 60s, timeout: 1s, critical: false}
  - {name: down, kind: tcp, address: "127.0.0.1:{refused}", interval: 60s, timeout: {t},
     critical: false}
""".replace("TOKEN", TOKEN)
V1 = (
    HEAD
    + '  - {name: old, kind: tcp, address: "127.0.0.1:{port}", interval: 60s, critical: false}\n'
)
V2 = (
    HEAD
    + '  - {name: new, kind: tcp, address: "127.0.0.1:{port}", interval: 60s, critical: false}\n'
)
INVALID = V2 + "  - {name: bad, kind: tcp, address: '127.0.0.1:1', interval: 1s, timeout: 2s}\n"


def render(template: str, refused: int, down_timeout: str, h: Healthd | None = None) -> str:
    text = template.replace("{refused}", str(refused)).replace("{t}", down_timeout)
    if h is not None:
        text = text.replace("{port}", str(h.port)).replace("{admin_port}", str(h.admin_port))
    return text


async def admin_state(session: aiohttp.ClientSession, h: Healthd) -> dict[str, Any]:
    async with session.get(h.admin_url("/admin/state"), headers=AUTH) as resp:
        assert resp.status == 200
        state: dict[str, Any] = await resp.json()
        return state


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[Healthd, int, aiohttp.ClientSession]]:
    refused = free_port()
    config = render(V1, refused, "1s")
    async with Healthd(tmp_path, config) as h, aiohttp.ClientSession() as session:
        await wait_ready(h, "/livez")
        async with session.post(
            h.admin_url("/heartbeat/app"), json={"status": "pass"}, headers=AUTH
        ):
            pass
        for _ in range(150):  # every background check has had its first run (jitter ≤ 1s):
            state = await admin_state(session, h)  # the heartbeat has a result from the post
            ran = state["uptime_s"] > FIRST_RUN_SPREAD + 0.1 and not state["inflight_checks"]
            if ran and all("observed_at" in c for c in state["checks"].values()):
                break
            await asyncio.sleep(0.02)
        yield h, refused, session


@pytest.mark.slow
async def test_sighup_applies_a_valid_change_and_keeps_untouched_state(
    running: tuple[Healthd, int, aiohttp.ClientSession],
) -> None:
    """Added/removed/changed checks apply; unchanged ones (and a posted heartbeat) keep state."""
    h, refused, session = running
    before = (await admin_state(session, h))["checks"]
    h.path.write_text(render(V2, refused, "2s", h))
    h.signal(signal.SIGHUP)
    line = await wait_line(h, "reload: applied")
    assert "added ['new'], removed ['old'], changed ['down']" in line
    after = (await admin_state(session, h))["checks"]
    assert set(after) == {"loop", "steady", "app", "down", "new"}
    for name in ("steady", "app"):
        for key in ("observed_at", "consecutive_failures", "status", "message"):
            assert after[name][key] == before[name][key], (name, key)
    assert after["app"]["status"] == "pass"
    assert after["down"]["timeout_ms"] == 2000
    assert after["down"].get("observed_at") != before["down"]["observed_at"]
    async with session.get(h.url("/readyz")) as resp:
        assert resp.status == 200


@pytest.mark.slow
async def test_invalid_file_is_kept_out_and_counted(
    running: tuple[Healthd, int, aiohttp.ClientSession],
) -> None:
    """An invalid file (SIGHUP or POST) changes nothing, logs file:line: why, answers 422."""
    h, refused, session = running
    before = (await admin_state(session, h))["checks"]
    h.path.write_text(render(INVALID, refused, "1s", h))
    h.signal(signal.SIGHUP)
    line = await wait_line(h, "reload failed:")
    lineno = h.path.read_text().splitlines().index(INVALID.splitlines()[-1]) + 1
    assert f"{h.path}:{lineno}: checks[5].timeout: must be shorter than interval" in line
    async with session.post(h.admin_url("/admin/reload"), headers=AUTH) as resp:
        assert resp.status == 422
        body = await resp.json()
    assert body["ok"] is False
    assert "checks[5].timeout: must be shorter than interval (timeout" in body["error"]
    after = (await admin_state(session, h))["checks"]
    assert set(after) == set(before)
    assert after["steady"]["observed_at"] == before["steady"]["observed_at"]
    async with session.get(h.url("/readyz")) as resp:
        assert resp.status == 200

    h.path.write_text(render(V2, refused, "1s", h))
    async with session.post(h.admin_url("/admin/reload"), headers=AUTH) as resp:
        assert resp.status == 200
        assert (await resp.json())["added"] == ["new"]
    async with session.get(h.url("/metrics")) as resp:
        metrics = await resp.text()
    assert 'healthd_config_reloads_total{result="failure"} 2.0' in metrics
    assert 'healthd_config_reloads_total{result="success"} 1.0' in metrics


# --- in-process: what the daemon counts and what it keeps -------------------------


def daemon_for(path: Path, text: str) -> tuple[Daemon, CollectorRegistry]:
    path.write_text(text)
    settings = parse_settings(text)
    registry = CollectorRegistry()
    daemon = Daemon(settings, path, telemetry=setup(settings, registry=registry, env={}))
    return daemon, registry


def reloads(registry: CollectorRegistry, result: str) -> float | None:
    return registry.get_sample_value("healthd_config_reloads_total", {"result": result})


SMALL = """
server: {listen: "127.0.0.1:18099"}
checks:
  - {name: a, kind: tcp, address: "127.0.0.1:9", mode: on_demand}
"""


async def test_every_reload_is_counted(tmp_path: Path) -> None:
    """A valid file counts a success, an invalid one a failure (healthd_config_reloads_total)."""
    path = tmp_path / "healthd.yaml"
    daemon, registry = daemon_for(path, SMALL)
    assert (await daemon.reload()).ok
    assert (reloads(registry, "success"), reloads(registry, "failure")) == (1.0, 0.0)
    path.write_text(SMALL + "  - {name: a, kind: tcp, address: nope}\n")
    failed = await daemon.reload()
    assert not failed.ok
    assert any("checks[1].address" in e for e in failed.errors)
    assert (reloads(registry, "success"), reloads(registry, "failure")) == (1.0, 1.0)
    assert [s.name for s in daemon.settings.checks] == ["a"]


async def test_reload_applies_max_watchers(tmp_path: Path) -> None:
    """server.max_watchers takes effect on reload: new streams are refused beyond the new
    limit (open ones stay open)."""
    path = tmp_path / "healthd.yaml"
    daemon, _ = daemon_for(path, SMALL)
    assert daemon.watchers.limit == 64
    assert daemon.watchers.enter("sse")
    path.write_text(SMALL.replace("server: {", "server: {max_watchers: 1, "))
    assert (await daemon.reload()).ok
    assert daemon.watchers.limit == 1
    assert not daemon.watchers.enter("grpc")


async def test_listen_address_change_needs_a_restart(tmp_path: Path) -> None:
    """A new server.listen is not applied (logged and reported); the rest of the file is."""
    path = tmp_path / "healthd.yaml"
    daemon, _ = daemon_for(path, SMALL)
    path.write_text(SMALL.replace("18099", "18100") + "  - {name: b, kind: loop}\n")
    result = await daemon.reload()
    assert result.ok
    assert result.needs_restart == ["server.listen needs a restart; keeping 127.0.0.1:18099"]
    assert daemon.settings.server.listen == "127.0.0.1:18099"
    assert result.added == ["b"]
    assert daemon.health.store.spec("b") is not None
