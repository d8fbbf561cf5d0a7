"""The admin API (DESIGN §5): token, drain/ready, heartbeats; real process and in-process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from healthd.config import parse_settings
from healthd.lifecycle import Daemon
from healthd.observers import Telemetry
from tests.procs import Healthd
from tests.test_lifecycle import wait_ready

TOKEN = "adm1n-t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TTL = 0.8
CONFIG = f"""
server: {{listen: "127.0.0.1:{{port}}", admin_listen: "127.0.0.1:{{admin_port}}", token: {TOKEN}}}
shutdown: {{drain_delay: 0s, grace: 1s}}
checks:
  - {{name: loop, kind: loop, interval: 100ms, timeout: 50ms}}
  - {{name: app, kind: heartbeat, ttl: {TTL}s, interval: 100ms, timeout: 50ms}}
"""
ENDPOINTS = [
    ("POST", "/admin/drain"),
    ("POST", "/admin/ready"),
    ("POST", "/admin/reload"),
    ("GET", "/admin/state"),
    ("POST", "/heartbeat/app"),
    ("GET", "/no/such/path"),
]
Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def healthd(tmp_path: Path) -> AsyncIterator[Healthd]:
    async with Healthd(tmp_path, CONFIG) as h:
        await wait_ready(h, "/livez")  # the first background runs are in
        await asyncio.sleep(0.15)
        yield h


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def status_of(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url) as resp:
        await resp.read()
        return resp.status


async def beat(
    session: aiohttp.ClientSession, h: Healthd, status: str, message: str = ""
) -> dict[str, Any]:
    body = {"status": status, "message": message}
    async with session.post(h.admin_url("/heartbeat/app"), json=body, headers=AUTH) as resp:
        assert resp.status == 200
        result: dict[str, Any] = await resp.json()
        return result


@pytest.mark.slow
async def test_every_admin_path_needs_the_token(
    healthd: Healthd, session: aiohttp.ClientSession
) -> None:
    """Without a token or with a wrong one every admin request is 401 and changes nothing."""
    for method, path in ENDPOINTS:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            async with session.request(method, healthd.admin_url(path), headers=headers) as resp:
                assert resp.status == 401, (method, path, headers)
                assert resp.headers["WWW-Authenticate"].startswith("Bearer")
                assert (await resp.json())["error"] == "missing or wrong bearer token"
    async with session.get(healthd.admin_url("/admin/state"), headers=AUTH) as resp:
        assert resp.status == 200
        state = await resp.json()
    assert state["draining"] is False
    assert (
        state["checks"]["app"]["message"] == f"no heartbeat received yet (ttl {int(TTL * 1000)}ms)"
    )


@pytest.mark.slow
async def test_drain_and_ready_round_trip(healthd: Healthd, session: aiohttp.ClientSession) -> None:
    """POST /admin/drain makes /readyz 503 (liveness stays 200); POST /admin/ready undoes it."""
    await beat(session, healthd, "pass")
    assert await status_of(session, healthd.url("/readyz")) == 200
    async with session.post(healthd.admin_url("/admin/drain"), headers=AUTH) as resp:
        assert (resp.status, await resp.json()) == (200, {"draining": True})
    assert await status_of(session, healthd.url("/readyz")) == 503
    assert await status_of(session, healthd.url("/livez")) == 200
    async with session.post(healthd.admin_url("/admin/ready"), headers=AUTH) as resp:
        assert (resp.status, await resp.json()) == (200, {"draining": False})
    assert await status_of(session, healthd.url("/readyz")) == 200


@pytest.mark.slow
async def test_heartbeat_pass_fail_and_expiry(
    healthd: Healthd, session: aiohttp.ClientSession
) -> None:
    """A pass holds readiness for ttl (not less), then expires; fail and warn apply at once."""
    readyz = healthd.url("/readyz")
    assert await status_of(session, readyz) == 503  # no heartbeat yet
    posted = time.monotonic()
    assert (await beat(session, healthd, "pass", "alive"))["status"] == "pass"
    assert await status_of(session, readyz) == 200
    await asyncio.sleep(TTL * 0.6)
    assert await status_of(session, readyz) == 200  # not cut early
    end = posted + TTL + 2.0
    while time.monotonic() < end and await status_of(session, readyz) == 200:
        await asyncio.sleep(0.02)
    expired = time.monotonic() - posted
    assert TTL <= expired <= TTL + 0.1 + 0.5  # ttl + one interval + scheduling slack
    async with session.get(healthd.admin_url("/admin/state"), headers=AUTH) as resp:
        assert (await resp.json())["checks"]["app"]["message"].startswith("heartbeat expired")

    failed = await beat(session, healthd, "fail", "queue stuck")
    assert (failed["status"], failed["message"]) == ("fail", "queue stuck")
    assert await status_of(session, readyz) == 503
    warned = await beat(session, healthd, "warn", "queue at 80%")
    assert (warned["status"], warned["message"]) == ("warn", "queue at 80%")
    async with session.get(readyz) as resp:
        assert (resp.status, await resp.json()) == (200, {"status": "degraded"})


# --- in-process: request validation on the admin app -------------------------------------------


@pytest.fixture
async def admin(aiohttp_client: Callable[..., Awaitable[Client]]) -> tuple[Daemon, Client]:
    settings = parse_settings(CONFIG.replace("{port}", "1").replace("{admin_port}", "2"))
    daemon = Daemon(settings, telemetry=Telemetry())
    return daemon, await aiohttp_client(daemon.admin_app, headers=AUTH)


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (b"{not json", 400, "body: not valid JSON"),
        (b"[1, 2]", 400, 'body: must be a JSON object like {"status": "pass"}'),
        (b"{}", 400, "status: required, one of pass, warn, fail"),
        (b'{"status": "ok"}', 400, "status must be one of pass, warn, fail (got 'ok')"),
        (b'{"status": "pass", "message": 3}', 400, "message: must be a string"),
        (b'{"status": "pass", "extra": 1}', 400, "unknown key 'extra'"),
        (b'{"status": "pass", "message": "' + b"x" * 70_000 + b'"}', 413, None),
    ],
)
async def test_bad_heartbeat_bodies_are_4xx(
    admin: tuple[Daemon, Client], body: bytes, code: int, message: str | None
) -> None:
    """Bad JSON or status → 400 with one line; a body above 64 KiB → 413; never a 500."""
    _, client = admin
    resp = await client.post("/heartbeat/app", data=body)
    assert resp.status == code
    error = (await resp.json())["error"]
    assert message is None or error == message
    assert "\n" not in error


def heartbeat_of(size: int) -> bytes:
    """A valid heartbeat body of exactly `size` bytes."""
    frame = b'{"status": "pass", "message": ""}'
    body = frame[:-2] + b"x" * (size - len(frame)) + frame[-2:]
    assert len(body) == size
    return body


@pytest.mark.parametrize(("size", "code"), [(64 * 1024, 200), (64 * 1024 + 1, 413)])
async def test_body_limit_is_64_kib(admin: tuple[Daemon, Client], size: int, code: int) -> None:
    """A heartbeat body of exactly 64 KiB is read; one byte more is a 413 (client_max_size)."""
    _, client = admin
    resp = await client.post("/heartbeat/app", data=heartbeat_of(size))
    assert resp.status == code


async def test_chunked_body_above_64_kib_is_413(admin: tuple[Daemon, Client]) -> None:
    """A chunked body (no Content-Length) is held to 64 KiB as it is read: 413."""
    _, client = admin
    body = heartbeat_of(64 * 1024 + 1)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096]

    resp = await client.post("/heartbeat/app", data=chunks())
    assert "Content-Length" not in resp.request_info.headers
    assert resp.status == 413
    assert (await resp.json())["error"] == "Request Entity Too Large"


async def test_heartbeat_to_unknown_or_other_check_is_404(admin: tuple[Daemon, Client]) -> None:
    """Posting to a check that is not there, or is not a heartbeat, is 404."""
    _, client = admin
    for name in ("nope", "loop"):
        resp = await client.post(f"/heartbeat/{name}", json={"status": "pass"})
        assert resp.status == 404
        assert (await resp.json())["error"] == f"no heartbeat check {name!r}"


async def test_ready_is_refused_while_shutting_down(admin: tuple[Daemon, Client]) -> None:
    """Once SIGTERM started the shutdown, /admin/ready cannot leave draining (409)."""
    daemon, client = admin
    daemon.request_stop("SIGTERM")
    resp = await client.post("/admin/ready")
    assert resp.status == 409
    assert daemon.health.draining is True
    assert (await client.post("/admin/reload")).status == 409
