"""Response bodies: the shared part of a detailed body, and the same JSON either way."""

from __future__ import annotations

import json

from healthd.groups import HEALTH
from healthd.model import CheckResult, CheckState, Outcome, Reason, Snapshot, State, Status
from healthd.web import render


def snapshot(message: str = "connected to db:5432 — ok") -> Snapshot:
    result = CheckResult("db", "tcp", Outcome.PASS, Reason.OK, message, 0.0012, 1.0, 1.7e9, 0.5)
    checks = (CheckState("db", "tcp", True, Status.PASS, result, 0, 1, True),)
    return Snapshot(HEALTH, State.HEALTHY, False, checks, deadline=2.0, elapsed=0.001,
                    groups={"readiness": State.HEALTHY})  # fmt: skip


def test_stdlib_and_orjson_write_the_same_json() -> None:
    """Without orjson the stdlib writes the same document (non-ASCII messages included)."""
    view = render.snapshot_view(snapshot(), details=True)
    assert json.loads(render._stdlib_dumps(view)) == json.loads(render.dumps(view))
    assert json.loads(render.Renderer().json(snapshot(), True)) == json.loads(
        render._stdlib_dumps(view)
    )


def test_checks_part_is_rendered_once_per_snapshot() -> None:
    """Callers reading one snapshot share its rendered checks; their own fields differ."""
    renderer, shared = render.Renderer(), snapshot()
    first = renderer.json(shared, True)
    part = renderer._parts["json"][1]
    later = Snapshot(**{**{f: getattr(shared, f) for f in shared.__slots__}, "elapsed": 0.5})
    second = renderer.json(later, True)
    assert renderer._parts["json"][1] is part  # same check tuple: not rendered again
    assert json.loads(first)["elapsed_ms"] == 1.0
    assert json.loads(second)["elapsed_ms"] == 500.0
    assert json.loads(first)["checks"] == json.loads(second)["checks"]
    other = renderer.json(snapshot("another message"), True)
    assert json.loads(other)["checks"]["db"]["message"] == "another message"


def test_the_fleet_reason_is_in_every_detailed_format() -> None:
    """A check the panic rule holds: JSON has `fleet`, health+json a note, verbose a line."""
    why = "fleet: 4/5 instances see db failing; staying in rotation"
    held = Snapshot(**{**{f: getattr(snapshot(), f) for f in Snapshot.__slots__},
                       "state": State.DEGRADED, "fleet": {"db": why}})  # fmt: skip
    assert json.loads(render.Renderer().json(held, True))["fleet"] == {"db": why}
    assert json.loads(render.Renderer().health_json(held, True))["notes"] == [why]
    assert "notes" not in json.loads(render.Renderer().health_json(held, False))
    assert "notes" not in json.loads(render.Renderer().health_json(snapshot(), True))
    assert f"[+]{why}" in render.render_verbose(held, "readyz", True, True)
