"""The OpenAPI 3.1 document: checked in, current, valid, and true to what render.py writes."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import schemathesis

from healthd.model import CheckResult, CheckState, Outcome, Reason, Snapshot, State, Status
from healthd.openapi import document
from healthd.web import render

ROOT = Path(__file__).parent.parent


def validator(name: str) -> jsonschema.Draft202012Validator:
    """A validator for one of the document's component schemas (its $refs resolve)."""
    doc = document()
    return jsonschema.Draft202012Validator(
        {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    )


def test_openapi_json_is_current() -> None:
    """config/openapi.json is what `healthd openapi` prints (regenerate it if this fails)."""
    done = subprocess.run(
        [sys.executable, "-m", "healthd", "openapi"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    printed = json.loads(done.stdout)
    assert printed == document()
    on_disk = json.loads((ROOT / "config" / "openapi.json").read_text())
    assert on_disk == printed, "run `healthd openapi > config/openapi.json`"


def test_document_is_valid_openapi_31() -> None:
    """The document passes the OpenAPI 3.1 meta-schema (as schemathesis checks it)."""
    doc = document()
    assert doc["openapi"] == "3.1.0"
    schemathesis.openapi.from_dict(doc).validate()


def test_the_validity_check_can_fail() -> None:
    """The same check rejects a document with a broken operation, so the test above means it."""
    doc = copy.deepcopy(document())
    doc["paths"]["/readyz"]["get"]["responses"] = "none"
    with pytest.raises(ValueError, match="responses"):
        schemathesis.openapi.from_dict(doc).validate()


def test_every_schema_is_json_schema_2020_12_and_every_ref_resolves() -> None:
    """Component schemas are valid JSON Schema 2020-12; every $ref points at something."""
    doc = document()
    for schema in doc["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return found + [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    for ref in refs(doc):
        node: Any = doc
        for part in ref.removeprefix("#/").split("/"):
            assert part in node, f"unresolved {ref}"
            node = node[part]


def test_paths_and_operations() -> None:
    """Every path of DESIGN §5 is there with its method; probes take the budget parameters."""
    doc = document()
    want = {
        "/livez": "get", "/readyz": "get", "/startupz": "get", "/livez/{check}": "get",
        "/readyz/{check}": "get", "/health": "get", "/watch": "get", "/status": "get",
        "/metrics": "get",
        "/admin/drain": "post", "/admin/ready": "post", "/admin/reload": "post",
        "/admin/state": "get", "/heartbeat/{check}": "post", "/admin/fleet": "get",
    }  # fmt: skip
    assert {p: next(iter(ops)) for p, ops in doc["paths"].items()} == want
    params = {p["$ref"].rsplit("/", 1)[1] for p in doc["paths"]["/readyz"]["get"]["parameters"]}
    assert params == {
        "verbose", "exclude", "timeout", "fresh", "history", "X-Request-Timeout-Ms", "grpc-timeout",
        "X-Prometheus-Scrape-Timeout-Seconds", "x-envoy-expected-rq-timeout-ms",
    }  # fmt: skip
    for path, ops in doc["paths"].items():
        for op in ops.values():
            if path.startswith(("/admin", "/heartbeat")):
                assert op["security"] == [{"bearer": []}]
                assert "401" in op["responses"]


def _snapshot(group: str = "readiness") -> Snapshot:
    result = CheckResult(
        name="db", kind="tcp", outcome=Outcome.FAIL, reason=Reason.REFUSED,
        message="connection refused", duration=0.0012, started_at=1.0,
        observed_at=1_764_000_000.0, timeout=1.0,
    )  # fmt: skip
    checks = (
        CheckState("db", "tcp", True, Status.FAIL, result, consecutive_failures=1),
        CheckState("beat", "heartbeat", False),  # no result yet
    )
    return Snapshot(group, State.UNHEALTHY, False, checks, excluded=("x",), deadline=None)


@pytest.mark.parametrize("details", [True, False])
def test_rendered_json_conforms(details: bool) -> None:
    """render.Renderer's JSON bodies match the probe response schemas, both shapes."""
    body = json.loads(render.Renderer().json(_snapshot(), details))
    validator("Detailed" if details else "StatusOnly").validate(body)
    assert not validator("StatusOnly" if details else "Detailed").is_valid(body)


@pytest.mark.parametrize("details", [True, False])
def test_rendered_health_json_conforms(details: bool) -> None:
    """The application/health+json bodies match the HealthJson schema."""
    validator("HealthJson").validate(
        json.loads(render.Renderer().health_json(_snapshot(), details))
    )


def test_error_shape_is_closed() -> None:
    """An error body is exactly {"error": "..."}."""
    assert validator("Error").is_valid({"error": "no such path"})
    assert not validator("Error").is_valid({"error": "x", "trace": "..."})
