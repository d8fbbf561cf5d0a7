"""Pure: a Snapshot → response bodies (JSON, application/health+json, verbose text).

The part of a detailed body that grows with the number of checks (`checks`) is rendered
once per snapshot's check tuple and format, and shared by every caller reading that
generation; each caller only adds its own few fields (`deadline_ms`, `elapsed_ms`).
JSON is written by orjson when it is installed (`healthd[speed]`), by the stdlib otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from healthd.groups import HEALTH, drains
from healthd.model import CheckState, PastRun, Reason, Snapshot, State, Status


def _stdlib_dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _dumps() -> Callable[[Any], bytes]:
    try:
        import orjson
    except ImportError:
        return _stdlib_dumps
    return orjson.dumps


dumps = _dumps()

HEALTH_JSON = "application/health+json"
_IETF = {State.HEALTHY: "pass", State.DEGRADED: "warn"}
_IETF_CHECK = {Status.PASS: "pass", Status.WARN: "warn"}


def iso(ts: float) -> str:
    """A wall-clock time as JSON shows it: `2026-11-28T19:00:00.000Z`."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


History = Callable[[str], Sequence[PastRun]]  # a check's name → its kept results


def history_view(results: Sequence[PastRun]) -> list[dict[str, Any]]:
    """A check's kept results, oldest first, as `/health?history=N` lists them."""
    return [
        {
            "outcome": r.outcome.value,
            "reason": r.reason.value,
            "message": r.message,
            "duration_ms": round(r.duration * 1000, 3),
            "observed_at": iso(r.observed_at),
        }
        for r in results
    ]


def check_view(state: CheckState) -> dict[str, Any]:
    """One check's detail, as `/health` and `/readyz` show it to an authorised caller."""
    view: dict[str, Any] = {
        "status": state.status.value,
        "kind": state.kind,
        "critical": state.critical,
        "consecutive_failures": state.consecutive_failures,
        "flapping": state.flapping,
    }
    last = state.last
    if last is None:
        view["message"] = "no result yet"
        return view
    view.update(
        last_outcome=last.outcome.value,
        reason=Reason.FLAPPING.value if state.flapping else last.reason.value,
        message=message(state),
        duration_ms=round(last.duration * 1000, 3),
        observed_at=iso(last.observed_at),
        attempts=last.attempts,
    )
    if last.nested:
        view["checks"] = dict(last.nested)
    return view


def status_body(state: State) -> bytes:
    """The status-only JSON body (what a caller without authority gets)."""
    return dumps({"status": state.value})


def snapshot_view(
    snapshot: Snapshot, details: bool, history: History | None = None
) -> dict[str, Any]:
    """The JSON body as a dict (the CLI prints it indented); `history` adds each check's
    kept results (`?history=N`: built per request, never cached)."""
    body = _head(snapshot, details)
    if details:
        body["checks"] = {c.name: check_view(c) for c in snapshot.checks}
        if history is not None:
            for name, view in body["checks"].items():
                view["history"] = history_view(history(name))
    return body


def _head(snapshot: Snapshot, details: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"status": snapshot.state.value}
    if not details:
        return body
    body.update(
        group=snapshot.group,
        draining=snapshot.draining,
        deadline_ms=None if snapshot.deadline is None else round(snapshot.deadline * 1000, 3),
        elapsed_ms=round(snapshot.elapsed * 1000, 3),
    )
    if snapshot.excluded:
        body["excluded"] = list(snapshot.excluded)
    if snapshot.fleet:
        body["fleet"] = dict(snapshot.fleet)  # check → why the fleet rule holds it (§14)
    if snapshot.group == HEALTH:
        body["groups"] = {g: s.value for g, s in snapshot.groups.items()}
    return body


class Renderer:
    """Renders bodies, keeping the `checks` part of the last snapshot per format.

    One per view; the cache holds the check tuple it was made from and compares it by
    identity, so it is valid exactly while readers share that generation's tuple.
    """

    def __init__(self) -> None:
        self._parts: dict[str, tuple[tuple[CheckState, ...], bytes]] = {}

    def _part(self, fmt: str, checks: tuple[CheckState, ...], make: Callable[[], Any]) -> bytes:
        held = self._parts.get(fmt)
        if held is not None and held[0] is checks:
            return held[1]
        part = dumps(make())
        self._parts[fmt] = (checks, part)
        return part

    def json(self, snapshot: Snapshot, details: bool) -> bytes:
        head = dumps(_head(snapshot, details))
        if not details:
            return head
        checks = snapshot.checks
        part = self._part("json", checks, lambda: {c.name: check_view(c) for c in checks})
        return head[:-1] + b',"checks":' + part + b"}"

    def health_json(self, snapshot: Snapshot, details: bool) -> bytes:
        """The IETF draft shape (draft-inadarei-api-health-check): pass / warn / fail."""
        head = dumps(_ietf_head(snapshot, details))
        if not details:
            return head
        checks = snapshot.checks
        part = self._part(
            "health+json",
            checks,
            lambda: {f"{c.name}:responseTime": [_ietf_check(c)] for c in checks},
        )
        return head[:-1] + b',"checks":' + part + b"}"


def _ietf_head(snapshot: Snapshot, details: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"status": _IETF.get(snapshot.state, "fail")}
    if details:
        body["description"] = f"healthd {snapshot.group}: {snapshot.state.value}"
        if snapshot.fleet:
            body["notes"] = list(snapshot.fleet.values())  # why the fleet rule holds a check
    return body


def _ietf_check(c: CheckState) -> dict[str, Any]:
    return {
        "componentType": c.kind,
        "status": _IETF_CHECK.get(c.status, "fail"),
        "observedValue": round(c.last.duration * 1000, 3) if c.last else None,
        "observedUnit": "ms",
        "time": iso(c.last.observed_at) if c.last else None,
        "output": message(c),
    }


def message(state: CheckState) -> str:
    """The check's message: its last result's, prefixed with the flapping hold if any."""
    last = state.last
    if last is None:
        return "no result yet"
    if state.flapping and state.flap is not None and not last.skipped:
        return f"flapping ({state.flap.percent:.0f}% changes); last run: {last.message}"
    return last.message


def verbose_line(state: CheckState, details: bool) -> str:
    """`[+]db ok`, `[-]cache failed: connection refused`, `[-]db timeout after 500ms`,
    `[-]orders skipped: depends on db (timeout)`, `[-]db failed: flapping (…)`."""
    status, last = state.status, state.last
    why = message(state) if details else "reason withheld"
    if status is Status.SKIPPED:
        return f"[-]{state.name} {why if details and last else 'skipped'}"
    if status is Status.PASS:
        return f"[+]{state.name} ok"
    if status is Status.WARN:
        return f"[+]{state.name} warn: {why}"
    if status is Status.TIMEOUT:
        return f"[-]{state.name} {why if details and last else 'timeout'}"
    if status is Status.UNKNOWN:
        return f"[-]{state.name} unknown: {why}"
    return f"[-]{state.name} failed: {why}"


WITHHELD = "checks withheld: send the bearer token to see them (server.show_details)"


def render_verbose(snapshot: Snapshot, endpoint: str, passed: bool, details: bool) -> str:
    """One line a check, then the verdict. Check names are details (as in the JSON body,
    /watch, /status and gRPC List): without them, one line says how to see them."""
    if details:
        lines = [verbose_line(c, details) for c in snapshot.checks]
        lines += [f"[+]{name} excluded: ok" for name in snapshot.excluded]
        lines += [f"[+]{why}" for why in snapshot.fleet.values()]
    else:
        lines = [WITHHELD]
    if snapshot.draining and drains(snapshot.group):  # a latched startup stays passed
        lines.append("[-]draining: this instance is shutting down")
    lines.append(f"{endpoint} check {'passed' if passed else 'failed'}")
    return "\n".join(lines) + "\n"
