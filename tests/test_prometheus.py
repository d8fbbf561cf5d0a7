"""healthd against the real Prometheus toolchain: promtool lint, dashboard queries, a live scrape.

promtool and prometheus come from Debian's `prometheus` package (scripts/services.sh
installs it). Without them the tests skip locally, but fail under CI=true.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from healthd.config import parse_settings
from healthd.deadline import Deadline
from healthd.fleet.exposed import create_fleet
from healthd.model import Outcome
from healthd.observers import setup
from healthd.testing import FakeCheck
from tests.conftest import free_port, need
from tests.helpers import engine_with, settings
from tests.procs import Healthd

DASHBOARD = Path(__file__).parent.parent / "grafana" / "healthd-dashboard.json"
GRAFANA_VARS = {
    "$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h",
    "$instance": ".*", "$check": ".*",
}  # fmt: skip
NOT_METRICS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
               "unless", "offset", "bool", "inf", "nan"}  # fmt: skip


def tool(name: str) -> str:
    return need(name, "for the Prometheus tests")


async def exercised_registry() -> CollectorRegistry:
    """A registry after runs of every outcome, probes and reloads: every series exists."""
    s = settings([{"name": n, "mode": "on_demand", "critical": n == "db"} for n in
                  ("db", "cache", "slow", "warm")])  # fmt: skip
    fakes = {"db": FakeCheck([Outcome.PASS]), "cache": FakeCheck([Outcome.FAIL]),
             "slow": FakeCheck([Outcome.TIMEOUT]), "warm": FakeCheck([Outcome.WARN])}  # fmt: skip
    registry = CollectorRegistry()
    telemetry = setup(s, registry=registry, env={})
    engine = engine_with(fakes, s, telemetry=telemetry)
    await engine.evaluate("readiness", Deadline.after(2.0), fresh=True)
    assert telemetry.metrics is not None
    telemetry.metrics.probe("readyz", 200, 0.002, 2.0)
    telemetry.metrics.reload(True)
    fleet = parse_settings("fleet: {etcd: [http://127.0.0.1:9], service: s}\n").fleet
    create_fleet(fleet, engine.store, telemetry.metrics)  # its gauges (never started here)
    return registry


def exported_names(registry: CollectorRegistry) -> set[str]:
    names = set()
    for family in registry.collect():
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + s for s in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return names


def dashboard_exprs() -> list[str]:
    """Every PromQL expression in the dashboard (panel targets and variable queries)."""
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            match = re.fullmatch(r"label_values\((.*),\s*\w+\)", var["query"]["query"])
            assert match, var["query"]
            exprs.append(match.group(1))
    return exprs


def concrete(expr: str) -> str:
    for var, val in GRAFANA_VARS.items():
        expr = expr.replace(var, val)
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords,
    label names (in `{}` or `by (...)`) or strings."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    found = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        rest = expr[m.end() :].lstrip()
        if rest.startswith("(") or m.group(0).lower() in NOT_METRICS:
            continue
        found.add(m.group(0))
    return found


async def test_promtool_check_metrics_is_clean() -> None:
    """`promtool check metrics` finds nothing to lint in the text exposition."""
    promtool = tool("promtool")
    text = generate_latest(await exercised_registry())
    done = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, timeout=30, check=False
    )
    assert done.returncode == 0, (done.stdout + done.stderr).decode()
    assert not done.stdout.strip(), done.stdout.decode()


async def test_openmetrics_exposition_ends_with_eof() -> None:
    """The OpenMetrics rendering of the same registry ends with `# EOF`."""
    registry = await exercised_registry()
    text = generate_openmetrics(registry).decode()  # type: ignore[no-untyped-call]
    assert text.endswith("# EOF\n")
    assert "healthd_check_runs_total" in text


async def test_dashboard_names_only_exported_metrics() -> None:
    """Each metric a dashboard query names is one healthd exports."""
    exported = exported_names(await exercised_registry())
    used: set[str] = set()
    for expr in dashboard_exprs():
        names = metric_names(concrete(expr))
        assert names, f"no metric in {expr!r}"
        used |= names
    assert used <= exported, f"not exported: {sorted(used - exported)}"
    assert {"healthd_state", "healthd_check_status", "healthd_draining"} <= used


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    """`promtool check rules` accepts every dashboard expression as a recording rule."""
    promtool = tool("promtool")
    rules = [{"record": f"dashboard:expr_{i}", "expr": concrete(e)}
             for i, e in enumerate(dashboard_exprs())]  # fmt: skip
    path = tmp_path / "dashboard.rules.json"  # JSON is YAML: promtool reads it
    path.write_text(json.dumps({"groups": [{"name": "healthd-dashboard", "rules": rules}]}))
    done = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, timeout=30, check=False
    )
    assert done.returncode == 0, (done.stdout + done.stderr).decode()
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout.decode()


def test_dashboard_has_the_panels_and_check_variable() -> None:
    """The dashboard carries the panels the operator guide describes and a `check` variable."""
    board = json.loads(DASHBOARD.read_text())
    titles = {p["title"] for p in board["panels"]}
    assert {
        "Group state", "Check status", "Check duration p50 / p99", "Timeouts per second",
        "Probe requests by code", "Deadline budget: used vs given", "Draining", "Config reloads",
    } <= titles  # fmt: skip
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["check"]["type"] == "query"
    check_panels = [p for p in board["panels"]
                    if any("$check" in t["expr"] for t in p["targets"])]  # fmt: skip
    assert len(check_panels) >= 3


@pytest.mark.slow
async def test_real_prometheus_scrapes_healthd(tmp_path: Path) -> None:
    """A real Prometheus scraping a real healthd reports readiness degraded = 1 via its API."""
    prometheus = tool("prometheus")
    refused = free_port()
    config = f"""
server: {{listen: "127.0.0.1:{{port}}", admin_listen: "127.0.0.1:{{admin_port}}"}}
checks:
  - {{name: loop, kind: loop, interval: 1s, timeout: 500ms}}
  - {{name: cache, kind: tcp, address: "127.0.0.1:{refused}", critical: false,
      interval: 1s, timeout: 500ms}}
"""
    async with Healthd(tmp_path, config) as healthd:
        port = free_port()
        job = {
            "job_name": "healthd",
            "static_configs": [{"targets": [f"127.0.0.1:{healthd.port}"]}],
        }
        scrape = {"scrape_interval": "1s", "scrape_timeout": "900ms"}
        (tmp_path / "prometheus.yml").write_text(
            json.dumps({"global": scrape, "scrape_configs": [job]})
        )
        proc = await asyncio.create_subprocess_exec(
            prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            result = await query_until(
                f"http://127.0.0.1:{port}/api/v1/query",
                'healthd_state{group="readiness",state="degraded"}',
                limit=20.0,
            )
            assert result["metric"]["job"] == "healthd"
            assert result["value"][1] == "1"
        finally:
            proc.kill()
            await proc.wait()
            assert proc.stderr is not None
            await proc.stderr.read()


async def query_until(url: str, query: str, limit: float) -> dict[str, Any]:
    """Poll Prometheus's query API until `query` returns the value 1 (or `limit` passes)."""
    end = time.monotonic() + limit
    last: Any = None
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < end:
            try:
                async with http.get(url, params={"query": query}) as resp:
                    last = await resp.json()
            except aiohttp.ClientError as exc:
                last = repr(exc)  # Prometheus still starting
            else:
                results = last.get("data", {}).get("result", [])
                if results and results[0]["value"][1] == "1":
                    return dict(results[0])
            await asyncio.sleep(0.25)
    raise AssertionError(f"Prometheus never answered {query} = 1 within {limit}s: {last}")
