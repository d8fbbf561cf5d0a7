"""`http` against a real aiohttp server on loopback (plain and TLS)."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from pydantic import ValidationError

from healthd import runner
from healthd.checks.http import HttpSpec, cert_not_after, redact_url
from healthd.deadline import HEADER, Deadline
from healthd.model import CheckResult, Outcome, Reason
from tests.helpers import http_server

BIG = b"x" * (100 * 1024) + b"MARKER"
DOCUMENT = {"status": "up", "a": {"b": [{"c": 1}]}, "flag": True}


@dataclass
class Server:
    port: int
    tls_port: int | None = None
    seen: list[dict[str, str]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
async def server(certificate: tuple[Path, Path]) -> AsyncIterator[Server]:
    """Canned answers on plain HTTP and TLS; records the headers of every request."""
    box: list[Server] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        box[0].seen.append(dict(request.headers))
        path = request.path
        if path == "/ok":
            return web.Response(text="all good")
        if path.startswith("/status/"):
            return web.Response(status=int(path.rsplit("/", 1)[1]))
        if path == "/json":
            return web.json_response(DOCUMENT)
        if path == "/redirect":
            raise web.HTTPFound("/ok")
        if path == "/big":
            return web.Response(body=BIG)
        if path == "/hang":
            await box[0].release.wait()
        return web.Response(text="not json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    async with http_server(app, tls=context) as (plain, tls):
        box.append(Server(plain, tls))
        try:
            yield box[0]
        finally:
            box[0].release.set()


async def run(url: str, timeout: str = "1s", **keys: Any) -> CheckResult:
    spec = HttpSpec(name="web", kind="http", url=url, timeout=timeout, **keys)
    return await runner.run(spec, spec.build(), Deadline.after(5.0))


async def test_ok_passes(server: Server) -> None:
    """200 with the default expect_status passes with the status in the message."""
    result = await run(server.url("/ok"))
    assert result.outcome is Outcome.PASS, result.message
    assert result.message == "HTTP 200 OK"


async def test_server_error_fails_unhealthy(server: Server) -> None:
    """503 is outside 200..399: fail, reason unhealthy, message says what was expected."""
    result = await run(server.url("/status/503"))
    assert (result.outcome, result.reason) == (Outcome.FAIL, Reason.UNHEALTHY)
    assert result.message == f"HTTP 503 from {server.url('/status/503')} (expected 200..399)"


async def test_unauthorized_is_auth_failed(server: Server) -> None:
    """401 → reason auth_failed."""
    result = await run(server.url("/status/401"))
    assert (result.outcome, result.reason) == (Outcome.FAIL, Reason.AUTH_FAILED)


async def test_expect_status_takes_codes_and_ranges(server: Server) -> None:
    """expect_status [503, "200..204"] accepts 503 and rejects 302's target only if outside."""
    assert (await run(server.url("/status/503"), expect_status=[503, "200..204"])).outcome is (
        Outcome.PASS
    )
    result = await run(server.url("/status/418"), expect_status=[503, "200..204"])
    assert result.outcome is Outcome.FAIL
    assert "expected 503, 200..204" in result.message


async def test_redirects_are_followed(server: Server) -> None:
    """A 302 is followed; the final answer is judged."""
    result = await run(server.url("/redirect"), expect_status=[200])
    assert result.outcome is Outcome.PASS, result.message


async def test_body_contains(server: Server) -> None:
    """body_contains passes when the text is there, fails unhealthy when it is not."""
    assert (await run(server.url("/ok"), body_contains="good")).outcome is Outcome.PASS
    result = await run(server.url("/ok"), body_contains="bad")
    assert (result.outcome, result.reason) == (Outcome.FAIL, Reason.UNHEALTHY)
    assert result.message == "body lacks 'bad'"


async def test_body_read_is_bounded(server: Server) -> None:
    """Only the first 64 KiB are read: a marker past that is not seen."""
    result = await run(server.url("/big"), body_contains="MARKER")
    assert result.outcome is Outcome.FAIL
    assert result.message == "body lacks 'MARKER'"


@pytest.mark.parametrize(
    ("path", "equals", "outcome"),
    [
        ("a.b[0].c", 1, Outcome.PASS),
        ("status", "up", Outcome.PASS),
        ("flag", True, Outcome.PASS),
        ("a.b[0].c", True, Outcome.FAIL),  # 1 is not true
        ("status", "down", Outcome.FAIL),
    ],
)
async def test_json_path_equals(server: Server, path: str, equals: Any, outcome: Outcome) -> None:
    """json_path + equals compares the value at a dotted path, types included."""
    result = await run(server.url("/json"), json_path=path, equals=equals)
    assert result.outcome is outcome, result.message


async def test_json_path_alone_needs_the_value_to_exist(server: Server) -> None:
    """json_path without equals passes if present; a missing step fails with the path."""
    assert (await run(server.url("/json"), json_path="a.b[0]")).outcome is Outcome.PASS
    result = await run(server.url("/json"), json_path="a.b[3].c")
    assert (result.reason, result.message) == (Reason.UNHEALTHY, "json a.b[3].c: missing")


async def test_json_path_on_text_is_protocol(server: Server) -> None:
    """A body that is not JSON → reason protocol."""
    result = await run(server.url("/text"), json_path="status")
    assert (result.reason, result.message) == (Reason.PROTOCOL, "the body is not JSON")


async def test_sends_budget_headers_and_trace_context(server: Server) -> None:
    """X-Request-Timeout-Ms (within the budget), traceparent and configured headers go out."""
    span = NonRecordingSpan(
        SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, False, TraceFlags(1))
    )
    with trace.use_span(span):
        result = await run(server.url("/ok"), timeout="800ms", headers={"X-Api-Key": "k-123"})
    assert result.outcome is Outcome.PASS
    seen = server.seen[-1]
    assert 0 < int(seen[HEADER]) <= 800
    assert seen["traceparent"].split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
    assert seen["X-Api-Key"] == "k-123"
    assert seen["User-Agent"].startswith("healthd/")


async def test_hung_server_times_out_at_the_deadline(server: Server) -> None:
    """A server that never answers → timeout at 300ms, not before, not much after."""
    result = await run(server.url("/hang"), timeout="300ms")
    assert (result.outcome, result.reason) == (Outcome.TIMEOUT, Reason.TIMEOUT)
    assert 0.28 <= result.duration <= 0.6


async def test_refused_is_fast(refused_port: int) -> None:
    """Nothing listening → reason refused, at once."""
    result = await run(f"http://127.0.0.1:{refused_port}/")
    assert (result.outcome, result.reason) == (Outcome.FAIL, Reason.REFUSED)
    assert result.message == f"connection refused: 127.0.0.1:{refused_port}"
    assert result.duration < 0.3


async def test_unknown_host_is_dns() -> None:
    """A name that cannot exist → reason dns."""
    result = await run("http://does-not-exist.invalid/")
    assert (result.outcome, result.reason) == (Outcome.FAIL, Reason.DNS)


async def test_secrets_stay_out_of_messages_and_reprs(server: Server) -> None:
    """URL password, query values and header values never show in a message or repr."""
    url = f"http://app:hunter2@127.0.0.1:{server.port}/status/500?token=s3cr3t"
    result = await run(url, headers={"X-Api-Key": "tok-999"})
    assert result.message.startswith(f"HTTP 500 from http://app:***@127.0.0.1:{server.port}/")
    assert "token=***" in result.message
    spec = HttpSpec(name="web", kind="http", url=url, headers={"X-Api-Key": "tok-999"})
    for text in (result.message, repr(spec), str(spec.model_dump())):
        for secret in ("hunter2", "s3cr3t", "tok-999"):
            assert secret not in text


def test_redact_url() -> None:
    """Userinfo and query values are masked; scheme, host, port and path stay."""
    assert redact_url("https://u:p@h:8443/x?a=1&b=2#f") == "https://u:***@h:8443/x?a=***&b=***"
    assert redact_url("https://token@h/") == "https://***@h/"
    assert redact_url("http://h/readyz") == "http://h/readyz"


async def test_self_signed_certificate_fails_tls(server: Server) -> None:
    """tls_verify (default true) rejects a self-signed certificate: reason tls."""
    result = await run(f"https://127.0.0.1:{server.tls_port}/ok")
    assert (result.outcome, result.reason) == (Outcome.FAIL, Reason.TLS)


async def test_certificate_close_to_expiry_warns(server: Server) -> None:
    """A certificate expiring in 3 days warns under cert_warn_days 30, passes under 2."""
    url = f"https://127.0.0.1:{server.tls_port}/ok"
    result = await run(url, tls_verify=False, cert_warn_days=30)
    assert result.outcome is Outcome.WARN, result.message
    assert "certificate expires in 3.0 days (< 30)" in result.message
    result = await run(url, tls_verify=False, cert_warn_days=2)
    assert result.outcome is Outcome.PASS, result.message


def test_cert_not_after_matches_openssl(certificate: tuple[Path, Path]) -> None:
    """The tiny DER reader finds the same notAfter as openssl."""
    der = ssl.PEM_cert_to_DER_cert(certificate[0].read_text())
    out = subprocess.run(
        ["openssl", "x509", "-noout", "-enddate", "-in", str(certificate[0])],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    expected = datetime.strptime(out.strip().split("=", 1)[1], "%b %d %H:%M:%S %Y GMT")
    assert cert_not_after(der) == expected.replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"url": "ftp://h/"}, "http:// or https://"),
        ({"url": "http:///x"}, "must name a host"),
        ({"url": "http://h/", "expect_status": ["2xx"]}, "range like 200..399"),
        ({"url": "http://h/", "expect_status": ["399..200"]}, "within 100..599"),
        ({"url": "http://h/", "equals": 1}, "equals: needs json_path"),
        ({"url": "http://h/", "json_path": "a..b"}, "json_path"),
        ({"url": "http://h/", "cert_warn_days": 10}, "needs an https:// url"),
        ({"url": "http://u:p@h/", "headers": {"authorization": "x"}}, "cannot be combined"),
    ],
)
def test_invalid_specs(keys: dict[str, Any], message: str) -> None:
    """Bad keys are config errors that say why."""
    with pytest.raises(ValidationError, match=message):
        HttpSpec(name="web", kind="http", **keys)


def test_secret_url_is_not_echoed_in_errors() -> None:
    """A URL rejected by validation does not appear in the error."""
    with pytest.raises(ValidationError) as info:
        HttpSpec(name="web", kind="http", url="ftp://u:hunter2@h/")
    assert "hunter2" not in str(info.value)


async def test_a_dropped_connection_is_not_resent_behind_our_back() -> None:
    """`retries: 0` is one connection per run: a server that drops the first connection
    after reading the request and answers the next reads as failing, with `attempts: 1`
    and exactly one connection made (aiohttp would otherwise re-send a GET on its own)."""
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        if connections > 1:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    async with listener:
        result = await run(f"http://127.0.0.1:{port}/flaky", retries=0)
        assert result.outcome is Outcome.FAIL, result.message
        assert result.attempts == 1
        assert connections == 1
        connections = 0
        retried = await run(f"http://127.0.0.1:{port}/flaky", retries=1, retry_delay="10ms")
        assert retried.outcome is Outcome.PASS, retried.message
        assert retried.attempts == 2
        assert connections == 2
