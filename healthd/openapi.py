"""Pure: the OpenAPI 3.1 document of the probe and admin APIs (reference §5), from plain data.

`healthd openapi` prints it; config/openapi.json is that output, checked in (a test fails
when it is stale: run `healthd openapi > config/openapi.json`). The shapes follow what
web/probes.py, web/admin.py and web/render.py answer; tests/test_fuzz_api.py holds a
live daemon to it.
Over ~300 lines because it is a document written as data: one page per API, nothing to split.
"""

from __future__ import annotations

from typing import Any

import healthd
from healthd.durations import PATTERN as DURATION
from healthd.groups import GROUPS
from healthd.model import Outcome, Reason, State, Status

JSON = "application/json"
NUMBER = r"^[0-9]+(\.[0-9]+)?$"  # what the budget headers take (a decimal, non-negative)
PROBES = {"livez": "liveness", "readyz": "readiness", "startupz": "startup"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: dict[str, Any], optional: dict[str, Any] | None = None, **more: Any) -> Any:
    return {
        "type": "object",
        "required": list(required),
        "properties": {**required, **(optional or {})},
        **more,
    }


def _enum(values: Any) -> dict[str, Any]:
    return {"type": "string", "enum": [v.value for v in values]}


NUM = {"type": "number"}
STR = {"type": "string"}
BOOL = {"type": "boolean"}
INT = {"type": "integer"}


def schemas() -> dict[str, Any]:
    check = _obj(
        {"status": _ref("Status"), "kind": STR, "critical": BOOL, "consecutive_failures": INT},
        {
            "message": STR,
            "last_outcome": _enum(Outcome),
            "reason": _enum(Reason),
            "duration_ms": NUM,
            "observed_at": {"type": "string", "format": "date-time"},
            "checks": {"type": "object", "description": "a remote check's nested checks"},
            "flapping": BOOL,
            "attempts": {"type": "integer", "minimum": 0, "description": "0: skipped, not run"},
            "history": {
                "type": "array",
                "items": _ref("HistoryEntry"),
                "description": "?history=N: the check's last N results, oldest first",
            },
        },
    )
    history_entry = _obj(
        {
            "outcome": _enum(Outcome),
            "reason": _enum(Reason),
            "message": STR,
            "duration_ms": NUM,
            "observed_at": {"type": "string", "format": "date-time"},
        },
        additionalProperties=False,
    )
    at = {"type": "string", "format": "date-time"}
    transition = {"previous": {"type": ["string", "null"]}, "message": STR, "at": at}
    watch = {
        "WatchSnapshot": _obj(
            {"groups": {"type": "object", "additionalProperties": _ref("State")}, "draining": BOOL},
            {"checks": {"type": "object", "additionalProperties": _ref("CheckView")}},
            description="event: snapshot (first, and after a resume from an id no longer held)",
        ),
        "WatchGroup": _obj(
            {"name": STR, "state": _ref("State"), **transition},
            description="event: group (a group's state changed)",
        ),
        "WatchCheck": _obj(
            {"name": STR, "status": _ref("Status"), **transition},
            description="event: check (a check's status changed; only with details)",
        ),
        "WatchEnd": _obj(
            {"message": STR, "at": at},
            description="event: draining (the listeners are closing) or dropped (this reader "
            "fell behind the ring, or its writes stalled): the stream ends",
        ),
    }
    detailed = _obj(
        {
            "status": _ref("State"),
            "group": STR,
            "draining": BOOL,
            "deadline_ms": {"type": ["number", "null"]},
            "elapsed_ms": NUM,
            "checks": {"type": "object", "additionalProperties": _ref("CheckView")},
        },
        {
            "excluded": {"type": "array", "items": STR},
            "groups": {"type": "object", "additionalProperties": _ref("State")},
            "fleet": {
                "type": "object",
                "additionalProperties": STR,
                "description": "check → why the fleet rule holds it (docs/reference.md §14)",
            },
        },
    )
    ietf = {"type": "string", "enum": ["pass", "warn", "fail"]}
    entry = _obj(
        {"componentType": STR, "status": ietf, "observedUnit": STR, "output": STR},
        {"observedValue": {"type": ["number", "null"]}, "time": {"type": ["string", "null"]}},
    )
    health_json = _obj(
        {"status": ietf},
        {
            "description": STR,
            "notes": {"type": "array", "items": STR},
            "checks": {"type": "object", "additionalProperties": {"type": "array", "items": entry}},
        },
    )
    state_check = {
        "allOf": [_ref("CheckView")],
        "properties": {
            "mode": {"type": "string", "enum": ["background", "on_demand"]},
            "interval_ms": NUM,
            "timeout_ms": NUM,
            "groups": {"type": "array", "items": STR},
        },
    }
    in_flight = _obj({"request": STR, "age_ms": NUM})
    admin_state = _obj(
        {
            "version": STR,
            "state_version": INT,
            "draining": BOOL,
            "started": BOOL,
            "groups": {"type": "object", "additionalProperties": _ref("State")},
            "checks": {"type": "object", "additionalProperties": state_check},
            "inflight_checks": {
                "type": "object",
                "additionalProperties": _obj({"age_ms": NUM}),
            },
            "shutting_down": BOOL,
            "uptime_s": NUM,
            "config": STR,
            "requests_served": INT,
            "requests_in_flight": {"type": "array", "items": in_flight},
        },
        {
            "fleet": _obj(  # only with `fleet:` configured
                {
                    "connected": BOOL,
                    "problem": {"type": ["string", "null"]},
                    "instances": INT,
                    "slot": {"type": ["integer", "null"]},
                    "rules": {"type": "object", "additionalProperties": STR},
                }
            )
        },
    )
    names = {"type": "array", "items": STR}
    reload = _obj(
        {
            "ok": BOOL,
            "errors": names,
            "added": names,
            "removed": names,
            "changed": names,
            "needs_restart": names,
        },
        {"error": STR},
    )
    return {
        "Error": _obj({"error": STR}, additionalProperties=False),
        "HistoryEntry": history_entry,
        **watch,
        "State": _enum(State),
        "Status": _enum(Status),
        "CheckView": check,
        "StatusOnly": _obj({"status": _ref("State")}, additionalProperties=False),
        "Detailed": detailed,
        "HealthJson": health_json,
        "AdminState": admin_state,
        "Draining": _obj(
            {"draining": BOOL},
            {"slot": {"type": ["integer", "null"]}, "note": STR},
            additionalProperties=False,
        ),
        "Fleet": _obj(
            {
                "service": STR,
                "instance": STR,
                "connected": BOOL,
                "problem": {"type": ["string", "null"]},
                "endpoints": {"type": "array", "items": STR},
                "ttl_ms": INT,
                "settle_ms": INT,
                "panic_threshold": STR,
                "max_draining": INT,
                "instances": {"type": "object"},
                "slots": {"type": "object", "additionalProperties": STR},
                "slot": {"type": ["integer", "null"]},
                "rules": {"type": "object"},
            }
        ),
        "ReloadResult": reload,
        "Beat": _obj(
            {"status": {"type": "string", "enum": ["pass", "warn", "fail"]}},
            {"message": STR},
            additionalProperties=False,
        ),
        "BeatResult": _obj(
            {"check": STR, "status": _ref("Status"), "last_outcome": _enum(Outcome), "message": STR}
        ),
    }


FRESH = ["", "1", "true", "yes", "0", "false", "no"]
PARAMETERS = [  # (name, in, schema, description)
    ("verbose", "query", STR, "plain text, one line a check"),
    ("exclude", "query", {"type": "array", "items": STR}, "leave a check out (repeatable)"),
    ("timeout", "query", {"type": "string", "pattern": DURATION}, "budget, e.g. 250ms"),
    ("fresh", "query", {"type": "string", "enum": FRESH}, "run the checks now; bare ?fresh: yes"),
    ("X-Request-Timeout-Ms", "header", {"type": "string", "pattern": NUMBER}, "budget in ms"),
    ("grpc-timeout", "header", {"type": "string", "pattern": r"^[0-9]{1,8}[HMSmun]$"},
     "budget in the gRPC wire format, e.g. 250m"),
    ("X-Prometheus-Scrape-Timeout-Seconds", "header", {"type": "string", "pattern": NUMBER},
     "budget in seconds, minus deadline.offset"),
    ("x-envoy-expected-rq-timeout-ms", "header", {"type": "string", "pattern": NUMBER},
     "budget in ms"),
    ("check", "path", STR, "a check's name"),
    ("history", "query", {"type": "string", "pattern": r"^[0-9]{0,7}$"},
     "each check's last N results in the detailed JSON (bare: all kept; up to 1000000)"),
    ("group", "query", {"type": "array", "items": {"type": "string", "enum": list(GROUPS)}},
     "only these groups' events and their checks' (repeatable)"),
    ("watch-check", "query", {"type": "array", "items": STR},
     "only these checks' events (repeatable; needs details)"),
    ("Last-Event-ID", "header", {"type": "string", "pattern": r"^[0-9]{1,19}$"},
     "resume after this event id (EventSource sends it when it reconnects)"),
]  # fmt: skip


def parameters() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, where, schema, why in PARAMETERS:
        out[name] = {"name": name, "in": where, "schema": schema, "description": why}
    out["check"]["required"] = True
    out["watch-check"]["name"] = "check"  # /watch?check=: a query parameter, not the path's
    for name in ("exclude", "group", "watch-check"):
        out[name] |= {"style": "form", "explode": True}
    for name in ("verbose", "fresh", "history"):  # a bare ?verbose, ?fresh, ?history means yes
        out[name]["allowEmptyValue"] = True
    return out


def _response(why: str, content: dict[str, Any] | None = None, **headers: Any) -> Any:
    out: dict[str, Any] = {"description": why, "headers": {"Cache-Control": _hdr("NoStore")}}
    out["headers"].update(headers)
    if content:
        out["content"] = content
    return out


def _hdr(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/headers/{name}"}


def _json(schema: Any) -> dict[str, Any]:
    return {JSON: {"schema": schema}}


def responses() -> dict[str, Any]:
    error = _json(_ref("Error"))
    probe = {
        JSON: {"schema": {"oneOf": [_ref("StatusOnly"), _ref("Detailed")]}},
        "application/health+json": {"schema": _ref("HealthJson")},
        "text/plain": {"schema": STR},  # ?verbose
    }
    return {
        "Probe": _response("the group's state (detailed only for an authorised caller)", probe),
        "ProbeFailing": _response("unhealthy, unknown or draining", probe),
        "BadRequest": _response("a malformed parameter or header", error),
        "NotFound": _response("no such path, or no such check in this group", error),
        "NotAllowed": _response("a method other than the one the path takes", error),
        "TooLarge": _response("a request body above 64 KiB", error),
        "Unauthorized": _response(
            "missing or wrong bearer token", error, **{"WWW-Authenticate": {"schema": STR}}
        ),
        "Conflict": _response("refused while shutting down, or no drain slot free", error),
    }


PROBE_CODES = {"200": "Probe", "400": "BadRequest", "404": "NotFound", "405": "NotAllowed",
               "413": "TooLarge", "503": "ProbeFailing"}  # fmt: skip


def _probe_op(summary: str, params: list[str]) -> dict[str, Any]:
    return {
        "summary": summary,
        "security": [{}, {"bearer": []}],  # the token only decides whether details show
        "parameters": [{"$ref": f"#/components/parameters/{p}"} for p in params],
        "responses": {code: _ref_r(name) for code, name in PROBE_CODES.items()},
    }


def _admin_op(summary: str, ok: Any, **codes: str) -> dict[str, Any]:
    refs = {c: {"$ref": f"#/components/responses/{n}"} for c, n in codes.items()}
    return {
        "summary": summary,
        "security": [{"bearer": []}],
        "responses": {"200": _response("done", _json(ok)), "401": _ref_r("Unauthorized"), **refs},
    }


def _ref_r(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


def _views() -> dict[str, Any]:
    """/watch (a stream: `x-healthd-stream`, so the fuzz test leaves it to tests/test_watch.py)
    and /status (HTML for people)."""
    error = _json(_ref("Error"))
    frames = (
        "id/event/data frames; data is JSON: WatchSnapshot, WatchGroup, WatchCheck, WatchEnd; "
        "a `: keep-alive` comment every 15 s"
    )
    stream = {"text/event-stream": {"schema": {"type": "string", "description": frames}}}
    watch = {
        "summary": "transitions as Server-Sent Events: a snapshot, then group and check events",
        "security": [{}, {"bearer": []}],  # the token decides whether check events show
        "x-healthd-stream": True,
        "parameters": [
            {"$ref": f"#/components/parameters/{p}"}
            for p in ("group", "watch-check", "Last-Event-ID")
        ],
        "responses": {
            "200": _response("the stream (ends with a draining or dropped event)", stream),
            "400": _response("an unknown group or check, or an unreadable Last-Event-ID", error),
            "403": _response("?check without details (server.show_details)", error),
            "405": _ref_r("NotAllowed"),
            "503": _response("server.max_watchers streams are open, or shutting down", error),
        },
    }
    page = {
        "summary": "a status page for people (HTML, no external assets; live through /watch)",
        "security": [{}, {"bearer": []}],  # the token decides whether checks show
        "responses": {
            "200": _response("the page", {"text/html": {"schema": STR}}),
            "405": _ref_r("NotAllowed"),
        },
    }
    return {"/watch": {"get": watch}, "/status": {"get": page}}


def paths() -> dict[str, Any]:
    query = ["verbose", "exclude", "timeout", "fresh", "history"]
    headers = [
        "X-Request-Timeout-Ms",
        "grpc-timeout",
        "X-Prometheus-Scrape-Timeout-Seconds",
        "x-envoy-expected-rq-timeout-ms",
    ]
    out: dict[str, Any] = {}
    for path, group in PROBES.items():
        out[f"/{path}"] = {"get": _probe_op(f"the {group} group", query + headers)}
        if path != "startupz":
            op = _probe_op(f"one check of the {group} group", ["check", *query, *headers])
            out[f"/{path}/{{check}}"] = {"get": op}
    out["/health"] = {"get": _probe_op("every check and group", query + headers)}
    out |= _views()
    metrics = {"text/plain": {"schema": STR}, "application/openmetrics-text": {"schema": STR}}
    out["/metrics"] = {
        "get": {
            "summary": "Prometheus text format; OpenMetrics when Accept asks for it",
            "responses": {"200": _response("the metrics", metrics)},
        }
    }
    beat = _admin_op("post a heartbeat", _ref("BeatResult"), **{"400": "BadRequest"})
    beat["responses"] |= {"404": _ref_r("NotFound"), "413": _ref_r("TooLarge")}
    beat["parameters"] = [{"$ref": "#/components/parameters/check"}]
    beat["requestBody"] = {"required": True, "content": _json(_ref("Beat"))}
    out |= {
        "/admin/drain": {
            "post": _admin_op(
                "readiness fails from now on; with a fleet, takes a drain slot (409: none free)",
                _ref("Draining"),
                **{"409": "Conflict"},
            )
        },
        "/admin/fleet": {
            "get": _admin_op(
                "the fleet view (404: no fleet configured)", _ref("Fleet"), **{"404": "NotFound"}
            )
        },
        "/admin/ready": {
            "post": _admin_op("leave draining", _ref("Draining"), **{"409": "Conflict"})
        },
        "/admin/reload": {
            "post": _admin_op(
                "load and validate the config file", _ref("ReloadResult"), **{"409": "Conflict"}
            )
        },
        "/admin/state": {"get": _admin_op("everything the daemon knows", _ref("AdminState"))},
        "/heartbeat/{check}": {"post": beat},
    }
    out["/admin/reload"]["post"]["responses"]["422"] = _response(
        "the file is invalid; the running configuration is kept", _json(_ref("ReloadResult"))
    )
    return out


def document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document (a fresh dict each call)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "healthd",
            "version": healthd.__version__,
            "description": "Probe API on server.listen; admin API on server.admin_listen "
            "(bearer token required). Every answer carries Cache-Control: no-store.",
        },
        "servers": [
            {"url": "http://127.0.0.1:8099", "description": "probe listener (server.listen)"},
            {"url": "http://127.0.0.1:8098", "description": "admin listener (server.admin_listen)"},
        ],
        "paths": paths(),
        "components": {
            "schemas": schemas(),
            "parameters": parameters(),
            "responses": responses(),
            "headers": {"NoStore": {"required": True, "schema": {"const": "no-store"}}},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
