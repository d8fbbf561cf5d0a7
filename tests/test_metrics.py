"""Prometheus metrics: every DESIGN §7 series, with its type, labels and values, over /metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families
from prometheus_client.parser import text_string_to_metric_families

from healthd import __version__
from healthd.config import parse_settings
from healthd.health import Health
from healthd.lifecycle import Daemon
from healthd.model import Outcome
from healthd.observers import Telemetry, setup
from healthd.testing import FakeCheck
from healthd.web.probes import make_app
from tests.helpers import engine_with, serve, settings

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

# DESIGN §7: metric → (type, labels). Counters' family names drop `_total` in the parser.
CONTRACT = {
    "healthd_state": ("gauge", {"group", "state"}),
    "healthd_check_status": ("gauge", {"check", "kind", "status"}),
    "healthd_check_up": ("gauge", {"check", "kind", "critical"}),
    "healthd_check_duration_seconds": ("histogram", {"check", "kind"}),
    "healthd_check_runs_total": ("counter", {"check", "kind", "outcome"}),
    "healthd_check_last_success_timestamp_seconds": ("gauge", {"check"}),
    "healthd_probe_requests_total": ("counter", {"endpoint", "code"}),
    "healthd_probe_duration_seconds": ("histogram", {"endpoint"}),
    "healthd_deadline_budget_seconds": ("histogram", {"endpoint"}),
    "healthd_draining": ("gauge", set()),
    "healthd_config_reloads_total": ("counter", {"result"}),
    "healthd_event_loop_lag_seconds": ("gauge", set()),
    "healthd_build_info": ("gauge", {"version"}),
}


LOOP = {"name": "loop", "kind": "loop", "mode": "on_demand", "warn_lag": "30s", "fail_lag": "60s"}


def scenario() -> tuple[dict[str, FakeCheck], dict[str, Any]]:
    """db passes (critical), cache fails and slow times out (both non-critical)."""
    fakes = {
        "db": FakeCheck([Outcome.PASS]),
        "cache": FakeCheck([Outcome.FAIL], message="connection refused"),
        "slow": FakeCheck([Outcome.PASS], delay=2.0),
    }
    checks = [
        {"name": "db", "mode": "on_demand"},
        {"name": "cache", "mode": "on_demand", "critical": False},
        {"name": "slow", "mode": "on_demand", "critical": False, "timeout": "100ms"},
    ]
    return fakes, {"checks": checks}


async def wired(
    aiohttp_client: MakeClient, fakes: dict[str, FakeCheck], cfg: dict[str, Any]
) -> tuple[Client, Health, Telemetry]:
    s = settings(cfg["checks"], **{k: v for k, v in cfg.items() if k != "checks"})
    telemetry = setup(s, registry=CollectorRegistry(), env={})
    engine = engine_with(fakes, s, telemetry=telemetry)
    app = make_app(
        engine.views(),
        telemetry.routes,
        telemetry.middlewares,
        metrics=telemetry.metrics,
    )
    client = await serve(aiohttp_client, app)
    return client, engine, telemetry


def samples(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


async def scrape(client: Client, accept: str = "") -> tuple[str, str]:
    resp = await client.get("/metrics", headers={"Accept": accept} if accept else {})
    assert resp.status == 200
    return await resp.text(), resp.headers["Content-Type"]


async def test_every_contract_metric_has_its_type_and_labels(aiohttp_client: MakeClient) -> None:
    """After probes, runs and a reload, each §7 metric is exported with its type and labels."""
    fakes, cfg = scenario()
    cfg["checks"].append(LOOP)  # liveness: an on_demand loop check that always passes
    cfg["groups"] = {"readiness": {"exclude": ["loop"]}}
    client, _, telemetry = await wired(aiohttp_client, fakes, cfg)
    assert (await client.get("/readyz?fresh=1")).status == 200
    assert (await client.get("/livez")).status == 200
    assert telemetry.metrics is not None
    telemetry.metrics.reload(False)
    text, _ = await scrape(client)
    types = {}
    label_sets: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            label_sets.setdefault(family.name, set()).update(set(s.labels) - {"le"})
    for name, (kind, labels) in CONTRACT.items():
        fam = name.removesuffix("_total") if kind == "counter" else name
        assert types.get(fam) == kind, f"{name}: type {types.get(fam)}, want {kind}"
        assert label_sets.get(fam, set()) == labels, f"{name}: labels {label_sets.get(fam)}"
    assert "_created" not in text
    assert "process_cpu_seconds_total" in text  # process collector on the injected registry
    assert "python_gc_objects_collected_total" in text
    assert "python_info" in text


async def test_degraded_and_timeout_after_failing_non_critical(aiohttp_client: MakeClient) -> None:
    """A failing non-critical check: readiness degraded = 1, a timed-out run is counted."""
    fakes, cfg = scenario()
    client, _, _ = await wired(aiohttp_client, fakes, cfg)
    assert (await client.get("/readyz?fresh=1")).status == 200
    text, _ = await scrape(client)
    found = samples(text)
    assert 'healthd_state{group="readiness",state="degraded"} 1.0' in text
    for state in ("healthy", "unhealthy", "unknown", "draining"):
        assert value(found, "healthd_state", group="readiness", state=state) == 0.0
    runs = "healthd_check_runs_total"
    assert value(found, runs, check="slow", kind="tcp", outcome="timeout") == 1.0
    assert value(found, runs, check="cache", kind="tcp", outcome="fail") == 1.0
    assert value(found, runs, check="db", kind="tcp", outcome="pass") == 1.0
    status = "healthd_check_status"
    assert value(found, status, check="slow", kind="tcp", status="timeout") == 1.0
    assert value(found, status, check="slow", kind="tcp", status="pass") == 0.0
    assert value(found, "healthd_check_up", check="cache", kind="tcp", critical="false") == 0.0
    assert value(found, "healthd_check_up", check="db", kind="tcp", critical="true") == 1.0


async def test_state_series_cover_all_groups_and_states(aiohttp_client: MakeClient) -> None:
    """Before any run: every group has all five states, startup and readiness are unknown."""
    fakes, cfg = scenario()
    client, _, _ = await wired(aiohttp_client, fakes, cfg)
    found = samples((await scrape(client))[0])
    for group in ("readiness", "liveness", "startup"):
        values = [value(found, "healthd_state", group=group, state=s) for s in
                  ("healthy", "degraded", "unhealthy", "unknown", "draining")]  # fmt: skip
        assert sorted(v if v is not None else -1.0 for v in values) == [0, 0, 0, 0, 1], group
    assert value(found, "healthd_state", group="readiness", state="unknown") == 1.0
    assert value(found, "healthd_state", group="startup", state="unknown") == 1.0


async def test_draining_and_build_info(aiohttp_client: MakeClient) -> None:
    """Draining: healthd_draining 1 and readiness draining; build_info carries the version."""
    fakes, cfg = scenario()
    client, engine, _ = await wired(aiohttp_client, fakes, cfg)
    engine.drain()
    found = samples((await scrape(client))[0])
    assert value(found, "healthd_draining") == 1.0
    assert value(found, "healthd_state", group="readiness", state="draining") == 1.0
    assert value(found, "healthd_build_info", version=__version__) == 1.0


async def test_loop_lag_gauge_is_the_measured_lag(aiohttp_client: MakeClient) -> None:
    """The loop blocked for 300 ms: healthd_event_loop_lag_seconds says the lag measured."""
    client, engine, _ = await wired(aiohttp_client, *scenario())
    monitor = engine.lag  # the engine's own (a daemon hands it the one it made)
    monitor.ensure_running()
    await asyncio.sleep(0.01)  # the sampler is asleep
    time.sleep(0.3)  # blocking the loop is the point
    async with asyncio.timeout(5.0):
        while monitor.last < 0.2:  # the sampler woke (at least 250 ms) late
            await asyncio.sleep(0)
    await monitor.stop()  # no later sample can change what the scrape must show
    lag = value(samples((await scrape(client))[0]), "healthd_event_loop_lag_seconds")
    assert lag == monitor.last
    assert lag >= 0.2


async def test_probe_counters_and_budget(aiohttp_client: MakeClient) -> None:
    """Probes count by endpoint and code; duration and the caller's budget land in histograms."""
    fakes = {"db": FakeCheck([Outcome.FAIL])}
    client, _, _ = await wired(aiohttp_client, fakes, {"checks": [{"name": "db"}]})
    for _ in range(3):
        assert (await client.get("/readyz?timeout=250ms")).status == 503
    assert (await client.get("/readyz?timeout=nonsense")).status == 400  # not a probe answer
    found = samples((await scrape(client))[0])
    assert value(found, "healthd_probe_requests_total", endpoint="readyz", code="503") == 3.0
    assert value(found, "healthd_probe_duration_seconds_count", endpoint="readyz") == 3.0
    budget = "healthd_deadline_budget_seconds_bucket"
    assert value(found, budget, endpoint="readyz", le="0.1") == 0.0
    assert value(found, budget, endpoint="readyz", le="0.25") == 3.0
    assert value(found, budget, endpoint="readyz", le="0.001") == 0.0
    assert value(found, budget, endpoint="readyz", le="30.0") == 3.0


async def test_last_success_and_reloads(aiohttp_client: MakeClient) -> None:
    """A pass sets the last-success time; reloads count by result, both present from the start."""
    fakes, cfg = scenario()
    client, _, telemetry = await wired(aiohttp_client, fakes, cfg)
    found = samples((await scrape(client))[0])
    assert value(found, "healthd_config_reloads_total", result="success") == 0.0
    assert value(found, "healthd_config_reloads_total", result="failure") == 0.0
    await client.get("/readyz?fresh=1")
    assert telemetry.metrics is not None
    telemetry.metrics.reload(True)
    found = samples((await scrape(client))[0])
    last = "healthd_check_last_success_timestamp_seconds"
    assert (value(found, last, check="db") or 0) > 1.7e9
    assert value(found, last, check="cache") is None  # never passed
    assert value(found, "healthd_config_reloads_total", result="success") == 1.0


async def test_labels_never_carry_error_text(aiohttp_client: MakeClient) -> None:
    """Failure messages stay out of the exposition: label values are names and enums only."""
    fakes, cfg = scenario()
    client, _, _ = await wired(aiohttp_client, fakes, cfg)
    await client.get("/readyz?fresh=1")
    text, _ = await scrape(client)
    assert "connection refused" not in text
    assert "timeout after" not in text


async def test_openmetrics_when_asked(aiohttp_client: MakeClient) -> None:
    """`Accept: application/openmetrics-text` gets OpenMetrics, ending in `# EOF`, and parses."""
    fakes, cfg = scenario()
    client, _, _ = await wired(aiohttp_client, fakes, cfg)
    await client.get("/readyz?fresh=1")
    text, ctype = await scrape(client, "application/openmetrics-text; version=1.0.0")
    assert ctype.startswith("application/openmetrics-text")
    assert text.endswith("# EOF\n")
    names = {f.name for f in om_families(text)}  # type: ignore[no-untyped-call]
    assert {"healthd_state", "healthd_check_runs", "healthd_probe_requests"} <= names
    plain, ptype = await scrape(client)
    assert ptype.startswith("text/plain")
    assert "# EOF" not in plain


async def test_the_global_registry_is_untouched(aiohttp_client: MakeClient) -> None:
    """A daemon built as `healthd run` builds it, then scraped, adds nothing to
    prometheus_client.REGISTRY: its metrics live in their own registry."""
    before = {m.name for m in REGISTRY.collect()}
    settings = parse_settings("checks:\n  - {name: db, kind: tcp, address: '127.0.0.1:9'}\n")
    daemon = Daemon(settings)  # telemetry from setup(settings): no registry passed in
    client = await aiohttp_client(daemon.app)
    text, _ = await scrape(client)
    assert "healthd_state{" in text
    after = {m.name for m in REGISTRY.collect()}
    assert after == before
    assert [name for name in after if name.startswith("healthd")] == []
