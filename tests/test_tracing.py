"""OpenTelemetry traces: span tree and attributes (DESIGN §8), sampling, one trace end to end."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry

from healthd.deadline import Deadline
from healthd.errors import ConfigError
from healthd.health import Health
from healthd.model import Outcome
from healthd.observers import Telemetry, setup, tracing
from healthd.testing import FakeCheck
from healthd.web.probes import make_app
from tests.helpers import engine_with, serve, settings
from tests.procs import Healthd

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}


def traced(
    fakes: dict[str, FakeCheck], checks: list[dict[str, Any]], **top: Any
) -> tuple[Health, Telemetry, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    s = settings(checks, **top)
    telemetry = setup(
        s, registry=CollectorRegistry(), env={}, span_processor=SimpleSpanProcessor(exporter)
    )
    engine = engine_with(fakes, s, telemetry=telemetry)
    return engine, telemetry, exporter


def named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def by_check(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {
        str((s.attributes or {})["healthd.check.name"]): s for s in named(spans, "healthd.check")
    }


async def test_evaluate_parents_check_spans_in_callers_trace(aiohttp_client: MakeClient) -> None:
    """A probe with a traceparent: healthd.evaluate continues that trace and parents one
    healthd.check per run, with the §8 attributes."""
    fakes = {"db": FakeCheck([Outcome.PASS]), "cache": FakeCheck([Outcome.PASS])}
    checks: list[dict[str, Any]] = [{"name": "db", "mode": "on_demand", "timeout": "300ms"},
              {"name": "cache", "mode": "on_demand", "critical": False}]  # fmt: skip
    engine, telemetry, exporter = traced(fakes, checks)
    client = await serve(
        aiohttp_client, make_app(engine.views(), telemetry.routes, telemetry.middlewares)
    )
    assert (await client.get("/readyz?timeout=2s", headers=TRACEPARENT)).status == 200
    spans = exporter.get_finished_spans()
    [evaluate] = named(spans, "healthd.evaluate")
    assert evaluate.context is not None
    assert format(evaluate.context.trace_id, "032x") == TRACE_ID
    assert evaluate.parent is not None
    assert format(evaluate.parent.span_id, "016x") == PARENT_ID
    attrs = evaluate.attributes or {}
    assert attrs["healthd.group"] == "readiness"
    assert attrs["healthd.state"] == "healthy"
    assert 1900 <= float(attrs["healthd.deadline_ms"]) <= 2000  # type: ignore[arg-type]
    checks_ = by_check(spans)
    assert set(checks_) == {"db", "cache"}
    for span in checks_.values():
        assert span.parent is not None
        assert span.parent.span_id == evaluate.context.span_id
        assert span.status.status_code is not StatusCode.ERROR
    db = checks_["db"].attributes or {}
    assert db["healthd.check.kind"] == "tcp"
    assert db["healthd.check.outcome"] == "pass"
    assert 250 <= float(db["healthd.check.timeout_ms"]) <= 300  # type: ignore[arg-type]


async def test_fail_and_timeout_spans_have_error_status() -> None:
    """A failed and a timed-out run end with ERROR status; the group state is on evaluate."""
    fakes = {"db": FakeCheck([Outcome.FAIL]), "slow": FakeCheck([Outcome.PASS], delay=2.0)}
    checks = [{"name": "db", "mode": "on_demand"},
              {"name": "slow", "mode": "on_demand", "timeout": "100ms"}]  # fmt: skip
    engine, telemetry, exporter = traced(fakes, checks)
    await engine.evaluate("readiness", Deadline.after(1.0))
    await engine.stop()
    telemetry.shutdown()
    spans = exporter.get_finished_spans()
    checks_ = by_check(spans)
    assert checks_["db"].status.status_code is StatusCode.ERROR
    assert (checks_["db"].attributes or {})["healthd.check.outcome"] == "fail"
    assert checks_["slow"].status.status_code is StatusCode.ERROR
    assert (checks_["slow"].attributes or {})["healthd.check.outcome"] == "timeout"
    [evaluate] = named(spans, "healthd.evaluate")
    assert (evaluate.attributes or {})["healthd.state"] == "unhealthy"


async def test_sampling_drops_passing_background_runs_only() -> None:
    """sample_passing=0: passing background runs are not exported; fail and warn runs are,
    and so are passing runs a probe asked for."""
    fakes = {"ok": FakeCheck([Outcome.PASS]), "bad": FakeCheck([Outcome.FAIL]),
             "warm": FakeCheck([Outcome.WARN]), "asked": FakeCheck([Outcome.PASS])}  # fmt: skip
    bg = {"interval": "200ms", "timeout": "100ms"}
    checks = [{"name": n, **bg} for n in ("ok", "bad", "warm")]
    checks.append({"name": "asked", "mode": "on_demand"})
    engine, _, exporter = traced(fakes, checks, tracing={"sample_passing": 0.0})
    engine.start()
    try:
        for _ in range(40):
            await asyncio.sleep(0.05)
            if min(fakes[n].calls for n in ("ok", "bad", "warm")) >= 2:
                break
        await engine.evaluate("readiness", Deadline.after(1.0))
    finally:
        await engine.stop()
    assert fakes["ok"].calls >= 2
    names = [str((s.attributes or {})["healthd.check.name"])
             for s in named(exporter.get_finished_spans(), "healthd.check")]  # fmt: skip
    assert "ok" not in names
    assert names.count("bad") >= 2
    assert names.count("warm") >= 2
    assert names.count("asked") == 1


def test_exporter_names_are_checked() -> None:
    """OTEL_TRACES_EXPORTER accepts otlp, console, none; anything else is a config error."""
    assert tracing.exporters({}) == []
    assert tracing.exporters({"OTEL_TRACES_EXPORTER": "none"}) == []
    assert tracing.exporters({"OTEL_TRACES_EXPORTER": "console, otlp"}) == ["console", "otlp"]
    assert tracing.provider(1.0, {}) is None  # no SDK when nothing is asked for
    with pytest.raises(ConfigError, match="zipkin"):
        tracing.exporters({"OTEL_TRACES_EXPORTER": "zipkin"})


async def test_otlp_spans_are_batched_and_flushed_at_shutdown(
    aiohttp_server: Callable[..., Awaitable[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """OTEL_TRACES_EXPORTER=otlp: spans wait in a batch and reach the collector (OTLP/HTTP
    protobuf) when Telemetry.shutdown() flushes."""
    posts: list[tuple[str, bytes]] = []

    async def collector(request: web.Request) -> web.Response:
        posts.append((request.content_type, await request.read()))
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", collector)
    server = await aiohttp_server(app)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", str(server.make_url("/v1/traces")))
    s = settings([{"name": "db", "mode": "on_demand"}])
    telemetry = setup(s, registry=CollectorRegistry(), env={"OTEL_TRACES_EXPORTER": "otlp"})
    engine = engine_with({"db": FakeCheck([Outcome.FAIL])}, s, tracer=telemetry.tracer)
    await engine.evaluate("readiness", Deadline.after(1.0))
    assert posts == []  # batched, not sent inline
    await asyncio.to_thread(telemetry.shutdown)  # the exporter is synchronous HTTP
    assert [ctype for ctype, _ in posts] == ["application/x-protobuf"]
    assert b"healthd.check" in posts[0][1]
    assert b"healthd.evaluate" in posts[0][1]


# --- real processes, console exporter -------------------------------------------------------


def console_spans(proc: Healthd) -> list[dict[str, Any]]:
    out = []
    for line in proc.out:
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


async def spans_in_trace(
    procs: list[Healthd], trace_id: str, want: Callable[[list[dict[str, Any]]], bool]
) -> list[list[dict[str, Any]]]:
    """Each process's console spans in `trace_id`, once `want` holds for all of them (≤ 5 s)."""
    end = time.monotonic() + 5.0
    while True:
        found = [[s for s in console_spans(p) if s["context"]["trace_id"] == "0x" + trace_id]
                 for p in procs]  # fmt: skip
        if all(want(f) for f in found) or time.monotonic() > end:
            return found
        await asyncio.sleep(0.05)


def complete(spans: list[dict[str, Any]]) -> bool:
    """Both spans of an evaluation are in: the check's line can be read before evaluate's."""
    return {"healthd.check", "healthd.evaluate"} <= {s["name"] for s in spans}


CONSOLE = {"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "healthd-test"}


@pytest.mark.slow
async def test_console_probe_with_traceparent_yields_check_spans(tmp_path: Path) -> None:
    """OTEL_TRACES_EXPORTER=console: a probe carrying a traceparent produces healthd.check
    spans in that trace on stdout."""
    config = """
server: {listen: "127.0.0.1:{port}", admin_listen: "127.0.0.1:{admin_port}"}
checks:
  - {name: self, kind: tcp, address: "127.0.0.1:{port}", mode: on_demand, timeout: 1s}
"""
    async with (
        Healthd(tmp_path, config, env=CONSOLE, capture_stdout=True) as proc,
        aiohttp.ClientSession() as http,
    ):
        async with http.get(proc.url("/readyz"), headers=TRACEPARENT) as resp:
            assert resp.status == 200
        [spans] = await spans_in_trace([proc], TRACE_ID, complete)
    [check] = [s for s in spans if s["name"] == "healthd.check"]
    assert check["attributes"]["healthd.check.name"] == "self"
    assert check["attributes"]["healthd.check.outcome"] == "pass"
    assert check["resource"]["attributes"]["service.name"] == "healthd-test"
    [evaluate] = [s for s in spans if s["name"] == "healthd.evaluate"]
    assert evaluate["parent_id"] == "0x" + PARENT_ID
    assert check["parent_id"] == evaluate["context"]["span_id"]


@pytest.mark.slow
async def test_two_hop_chain_is_one_trace(tmp_path: Path) -> None:
    """front (remote check) → back (tcp check): both processes' spans share the caller's
    trace id, and back's evaluate is a child of front's remote check span."""
    back_cfg = """
server: {listen: "127.0.0.1:{port}", admin_listen: "127.0.0.1:{admin_port}"}
checks:
  - {name: self, kind: tcp, address: "127.0.0.1:{port}", mode: on_demand, timeout: 1s}
"""
    front_cfg = """
server: {listen: "127.0.0.1:{port}", admin_listen: "127.0.0.1:{admin_port}"}
checks:
  - {name: back, kind: remote, url: "http://127.0.0.1:BACK/readyz", mode: on_demand, timeout: 2s}
"""
    async with Healthd(tmp_path, back_cfg, "back", env=CONSOLE, capture_stdout=True) as back:
        front_cfg = front_cfg.replace("BACK", str(back.port))
        async with (
            Healthd(tmp_path, front_cfg, "front", env=CONSOLE, capture_stdout=True) as front,
            aiohttp.ClientSession() as http,
        ):
            async with http.get(front.url("/readyz"), headers=TRACEPARENT) as resp:
                assert resp.status == 200
            front_spans, back_spans = await spans_in_trace([front, back], TRACE_ID, complete)
    [remote] = [s for s in front_spans if s["name"] == "healthd.check"]
    assert remote["attributes"]["healthd.check.kind"] == "remote"
    [back_eval] = [s for s in back_spans if s["name"] == "healthd.evaluate"]
    assert back_eval["parent_id"] == remote["context"]["span_id"]
    [back_check] = [s for s in back_spans if s["name"] == "healthd.check"]
    assert back_check["parent_id"] == back_eval["context"]["span_id"]


@pytest.mark.slow
async def test_spans_are_flushed_before_the_exit_summary(
    tmp_path: Path, aiohttp_server: Callable[..., Awaitable[Any]]
) -> None:
    """SIGTERM right after a probe: its spans, still in the OTLP batch (60 s schedule delay),
    reach the collector before the exit summary is logged, and the exit code is 0. (The SDK's
    own atexit hook would deliver them too, but only after the summary: the order proves the
    daemon's flush.)"""
    posts: list[tuple[bytes, bool]] = []  # (body, was the exit summary already logged?)

    async def collector(request: web.Request) -> web.Response:
        body = await request.read()
        # A flushing daemon waits for this answer, so it cannot log its summary meanwhile;
        # without its flush, the summary is out before the SDK's atexit export starts.
        end = time.monotonic() + 0.5
        while time.monotonic() < end and not any("healthd exited" in x for x in proc.lines):
            await asyncio.sleep(0.01)
        posts.append((body, any("healthd exited" in x for x in proc.lines)))
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", collector)
    server = await aiohttp_server(app)
    env = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": str(server.make_url("/v1/traces")),
        "OTEL_BSP_SCHEDULE_DELAY": "60000",  # only the exit flush can deliver them in time
        "OTEL_SERVICE_NAME": "healthd-test",
    }
    config = """
server: {listen: "127.0.0.1:{port}", admin_listen: "127.0.0.1:{admin_port}"}
shutdown: {drain_delay: 0s, grace: 1s}
checks:
  - {name: self, kind: tcp, address: "127.0.0.1:{port}", mode: on_demand, timeout: 1s}
"""
    proc = Healthd(tmp_path, config, env=env)  # the collector reads its log lines
    async with proc, aiohttp.ClientSession() as http:
        async with http.get(proc.url("/readyz"), headers=TRACEPARENT) as resp:
            assert resp.status == 200
        assert posts == []  # batched, not yet sent
        proc.signal(signal.SIGTERM)
        assert await proc.wait() == 0
    assert posts, "no spans reached the collector"
    assert [logged for _, logged in posts] == [False] * len(posts)
    body = b"".join(b for b, _ in posts)
    assert bytes.fromhex(TRACE_ID) in body
    assert b"healthd.check" in body
    assert b"healthd.evaluate" in body
    assert any("healthd exited" in line for line in proc.lines)
