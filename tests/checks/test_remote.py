"""`remote` against a real aiohttp server answering like another healthd."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from pydantic import ValidationError

from healthd import runner
from healthd.checks.remote import RemoteSpec
from healthd.deadline import HEADER, Deadline
from healthd.model import CheckResult, Outcome, Reason
from tests.helpers import http_server

DB_PASS = {"status": "pass", "kind": "postgres", "critical": True, "message": "SELECT 1 ok"}
DB_TIMEOUT = {"status": "timeout", "kind": "postgres", "critical": True,
              "message": "timeout after 340ms"}  # fmt: skip
CACHE_FAIL = {"status": "fail", "kind": "redis", "critical": False,
              "message": "connection refused"}  # fmt: skip
ANSWERS: dict[str, tuple[int, Any]] = {
    "/healthy": (200, {"status": "healthy", "checks": {"db": DB_PASS}}),
    "/degraded": (200, {"status": "degraded", "checks": {"db": DB_PASS, "cache": CACHE_FAIL}}),
    "/unhealthy": (503, {"status": "unhealthy", "checks": {"cache": CACHE_FAIL, "db": DB_TIMEOUT}}),
    "/chain": (503, {"status": "unhealthy", "checks": {"payments": {
        "status": "fail", "kind": "remote", "critical": True,
        "message": "unhealthy: db: timeout after 340ms", "checks": {"db": DB_TIMEOUT}}}}),
    "/draining": (503, {"status": "draining"}),
    "/unknown": (503, {"status": "unknown", "checks": {"db": {"status": "unknown"}}}),
    "/no-details": (503, {"status": "unhealthy"}),
    "/status-only": (200, {"status": "healthy"}),
    "/ietf": (200, {"status": "warn"}),
}  # fmt: skip


@dataclass
class Server:
    port: int
    seen: list[dict[str, str]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    """Canned healthd answers by path; records every request's headers."""
    box: list[Server] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        box[0].seen.append(dict(request.headers))
        if request.path in ANSWERS:
            status, body = ANSWERS[request.path]
            return web.json_response(body, status=status)
        if request.path == "/honours-budget":
            # Like healthd: run checks within the caller's budget, answer just before it ends.
            await asyncio.sleep(int(request.headers[HEADER]) / 1000 - 0.05)
            return web.json_response(
                {"status": "unhealthy", "checks": {"db": DB_TIMEOUT}}, status=503
            )
        if request.path == "/hang":
            await box[0].release.wait()
        if request.path == "/text-ok":
            return web.Response(text="ok")
        return web.Response(status=404, text="<html>not found</html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    async with http_server(app) as (port,):
        box.append(Server(port))
        try:
            yield box[0]
        finally:
            box[0].release.set()


async def run(url: str, timeout: str = "1s", **keys: Any) -> CheckResult:
    spec = RemoteSpec(name="payments", kind="remote", url=url, timeout=timeout, **keys)
    return await runner.run(spec, spec.build(), Deadline.after(5.0))


async def test_healthy_passes_with_nested_checks(server: Server) -> None:
    """healthy → pass; the other side's checks come back as nested."""
    result = await run(server.url("/healthy"))
    assert result.outcome is Outcome.PASS, result.message
    assert result.message == "healthy (1 checks)"
    assert result.nested == {"db": DB_PASS}


async def test_degraded_warns_naming_the_failing_check(server: Server) -> None:
    """degraded → warn, the message names the non-critical failure."""
    result = await run(server.url("/degraded"))
    assert result.outcome is Outcome.WARN
    assert result.message == "degraded: cache: connection refused"
    assert result.nested is not None
    assert set(result.nested) == {"db", "cache"}


async def test_unhealthy_fails_naming_critical_leaves_first(server: Server) -> None:
    """unhealthy → fail, reason unhealthy, critical failures first; nested kept on failure."""
    result = await run(server.url("/unhealthy"))
    assert (result.outcome, result.reason) == (Outcome.FAIL, Reason.UNHEALTHY)
    assert result.message == "unhealthy: db: timeout after 340ms; cache: connection refused"
    assert result.nested is not None
    assert result.nested["db"] == DB_TIMEOUT


async def test_chain_names_the_leaf(server: Server) -> None:
    """A failing nested remote is followed down: `payments → db: timeout after 340ms`."""
    result = await run(server.url("/chain"))
    assert result.outcome is Outcome.FAIL
    assert result.message == "unhealthy: payments → db: timeout after 340ms"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/draining", "draining (no details shown to us)"),
        ("/unknown", "unknown: db: unknown"),
        ("/no-details", "unhealthy (no details shown to us)"),
        ("/html-404", "HTTP 404 from http://127.0.0.1:{port}/html-404"),
    ],
)
async def test_anything_else_fails_unhealthy(server: Server, path: str, message: str) -> None:
    """draining, unknown, no details, or a non-healthd error page → fail, reason unhealthy."""
    result = await run(server.url(path))
    assert (result.outcome, result.reason) == (Outcome.FAIL, Reason.UNHEALTHY)
    assert result.message == message.format(port=server.port)


async def test_plain_readyz_ok_passes(server: Server) -> None:
    """Any /readyz answering 2xx with a non-JSON body passes (not a healthd, still ready)."""
    result = await run(server.url("/text-ok"))
    assert result.outcome is Outcome.PASS
    assert "not a healthd answer" in result.message


async def test_status_only_and_ietf_words(server: Server) -> None:
    """A status-only body passes without nested; IETF `warn` reads as degraded."""
    result = await run(server.url("/status-only"))
    assert (result.outcome, result.nested) == (Outcome.PASS, None)
    assert (await run(server.url("/ietf"))).outcome is Outcome.WARN


async def test_sends_budget_token_and_accept(server: Server) -> None:
    """X-Request-Timeout-Ms is within our budget and > 0; the token goes as a bearer."""
    result = await run(server.url("/healthy"), timeout="700ms", token="tok-123")
    assert result.outcome is Outcome.PASS
    seen = server.seen[-1]
    assert 0 < int(seen[HEADER]) <= 700
    assert seen["Authorization"] == "Bearer tok-123"
    assert seen["Accept"] == "application/json"


async def test_no_token_no_authorization(server: Server) -> None:
    """Without a token no Authorization header is sent."""
    await run(server.url("/healthy"))
    assert "Authorization" not in server.seen[-1]


async def test_budget_is_carried_onward(server: Server) -> None:
    """A remote that answers within the budget we sent reports its leaf before our deadline."""
    result = await run(server.url("/honours-budget"), timeout="400ms")
    assert result.outcome is Outcome.FAIL, result.message
    assert result.message == "unhealthy: db: timeout after 340ms"
    assert 0.3 <= result.duration < 0.4


async def test_hung_remote_times_out_at_the_deadline(server: Server) -> None:
    """A remote that never answers → timeout at 300ms, not before, not much after."""
    result = await run(server.url("/hang"), timeout="300ms")
    assert (result.outcome, result.reason) == (Outcome.TIMEOUT, Reason.TIMEOUT)
    assert 0.28 <= result.duration <= 0.6


def test_token_stays_secret() -> None:
    """The token never shows in the spec's repr or dump."""
    spec = RemoteSpec(name="payments", kind="remote", url="http://h/readyz", token="tok-123")
    assert "tok-123" not in repr(spec)
    assert "tok-123" not in str(spec.model_dump())


def test_url_must_be_http() -> None:
    """A non-http URL is a config error."""
    with pytest.raises(ValidationError, match="http:// or https://"):
        RemoteSpec(name="payments", kind="remote", url="tcp://h:1")
