"""Pure: a Snapshot → response bodies (JSON, application/health+json, verbose text)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from healthd.model import CheckState, Snapshot, State, Status

HEALTH_JSON = "application/health+json"
_IETF = {State.HEALTHY: "pass", State.DEGRADED: "warn"}
_IETF_CHECK = {Status.PASS: "pass", Status.WARN: "warn"}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def check_view(state: CheckState) -> dict[str, Any]:
    """One check's detail, as `/health` and `/readyz` show it to an authorised caller."""
    view: dict[str, Any] = {
        "status": state.status.value,
        "kind": state.kind,
        "critical": state.critical,
        "consecutive_failures": state.consecutive_failures,
    }
    last = state.last
    if last is None:
        view["message"] = "no result yet"
        return view
    view.update(
        last_outcome=last.outcome.value,
        reason=last.reason.value,
        message=last.message,
        duration_ms=round(last.duration * 1000, 3),
        observed_at=_iso(last.observed_at),
    )
    if last.nested:
        view["checks"] = dict(last.nested)
    return view


def snapshot_view(snapshot: Snapshot, details: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"status": snapshot.state.value}
    if not details:
        return body
    body.update(
        group=snapshot.group,
        draining=snapshot.draining,
        deadline_ms=None if snapshot.deadline is None else round(snapshot.deadline * 1000, 3),
        elapsed_ms=round(snapshot.elapsed * 1000, 3),
        checks={c.name: check_view(c) for c in snapshot.checks},
    )
    if snapshot.excluded:
        body["excluded"] = list(snapshot.excluded)
    body.update(snapshot.extra)
    return body


def render_json(snapshot: Snapshot, details: bool) -> bytes:
    return json.dumps(snapshot_view(snapshot, details), separators=(",", ":")).encode()


def render_health_json(snapshot: Snapshot, details: bool) -> bytes:
    """The IETF draft shape (draft-inadarei-api-health-check): pass / warn / fail."""
    body: dict[str, Any] = {"status": _IETF.get(snapshot.state, "fail")}
    if details:
        body["description"] = f"healthd {snapshot.group}: {snapshot.state.value}"
        body["checks"] = {
            f"{c.name}:responseTime": [
                {
                    "componentType": c.kind,
                    "status": _IETF_CHECK.get(c.status, "fail"),
                    "observedValue": round(c.last.duration * 1000, 3) if c.last else None,
                    "observedUnit": "ms",
                    "time": _iso(c.last.observed_at) if c.last else None,
                    "output": c.last.message if c.last else "no result yet",
                }
            ]
            for c in snapshot.checks
        }
    return json.dumps(body, separators=(",", ":")).encode()


def verbose_line(state: CheckState, details: bool) -> str:
    """`[+]db ok`, `[-]cache failed: connection refused`, `[-]db timeout after 500ms`."""
    status, last = state.status, state.last
    why = (last.message if last else "no result yet") if details else "reason withheld"
    if status is Status.PASS:
        return f"[+]{state.name} ok"
    if status is Status.WARN:
        return f"[+]{state.name} warn: {why}"
    if status is Status.TIMEOUT:
        return f"[-]{state.name} {why if details and last else 'timeout'}"
    if status is Status.UNKNOWN:
        return f"[-]{state.name} unknown: {why}"
    return f"[-]{state.name} failed: {why}"


def render_verbose(snapshot: Snapshot, endpoint: str, passed: bool, details: bool) -> str:
    lines = [verbose_line(c, details) for c in snapshot.checks]
    lines += [f"[+]{name} excluded: ok" for name in snapshot.excluded]
    if snapshot.draining and snapshot.group != "liveness":
        lines.append("[-]draining: this instance is shutting down")
    lines.append(f"{endpoint} check {'passed' if passed else 'failed'}")
    return "\n".join(lines) + "\n"
