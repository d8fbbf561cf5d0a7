"""The admin listener (reference §5): drain, ready, reload, state, heartbeats.

Every request needs `Authorization: Bearer <server.token>` (compared in constant time by
`base.authorized`); no token configured means the daemon does not start this listener,
and a token cleared by a reload answers 401 to everything. Bad input is a 4xx with a
one-line message, never a 500.

    POST /admin/drain            readiness fails from now on (liveness unaffected); with a
                                 fleet, takes a drain slot first: 409 naming the holders when
                                 none is free, unless ?force=1
    POST /admin/ready            leave draining (refused with 409 while shutting down)
    GET  /admin/fleet            the fleet view (404 without `fleet:`)
    POST /admin/reload           load + validate the config file; 422 with the errors if invalid
    GET  /admin/state            every check in full, groups, in-flight checks with their age
    POST /heartbeat/{check}      {"status": "pass|warn|fail", "message": "..."} (heartbeat kind)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from aiohttp import web
from aiohttp.typedefs import Middleware

import healthd
from healthd.fleet.slots import Taken
from healthd.groups import HEALTH
from healthd.health import Views
from healthd.model import CheckResult
from healthd.store import Store
from healthd.web import base, render

log = logging.getLogger("healthd.admin")


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """What a reload did: `ok` False means nothing changed and `errors` says why."""

    ok: bool
    errors: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    needs_restart: list[str] = field(default_factory=list)


class Control(Protocol):
    """What the admin API steers: the shell around the core (lifecycle.Daemon), which
    passes drain, ready and heartbeats on to its Health."""

    @property
    def shutting_down(self) -> bool: ...

    @property
    def draining(self) -> bool: ...

    def drain(self) -> None: ...

    def ready(self) -> None: ...

    async def beat(self, name: str, status: str, message: str) -> CheckResult: ...

    async def reload(self) -> ReloadResult: ...

    def info(self) -> dict[str, Any]: ...


class Slots(Protocol):
    """What the admin API asks of a fleet (fleet/agent.Fleet): drain slots and its view."""

    async def take_slot(self, force: bool = False) -> Taken: ...

    async def give_slot(self) -> None: ...

    def describe(self) -> dict[str, Any]: ...


VIEWS = web.AppKey("views", Views)
CONTROL = web.AppKey("control", Control)
FLEET = web.AppKey("fleet", Slots)
YES = ("", "1", "true", "yes")


def state_view(store: Store, running: dict[str, float]) -> dict[str, Any]:
    """Everything the store knows, in full: checks, groups, `running` runs (their age in
    seconds), draining."""
    snapshot = store.snapshot(HEALTH)
    checks: dict[str, Any] = {}
    for state in snapshot.checks:
        spec = store.spec(state.name)
        view = render.check_view(state)
        if spec is not None:
            view.update(
                mode=spec.mode,
                interval_ms=round(spec.interval * 1000, 3),
                timeout_ms=round(spec.timeout * 1000, 3),
                groups=store.groups_of(state.name),
            )
        checks[state.name] = view
    inflight = {n: {"age_ms": round(age * 1000, 1)} for n, age in running.items()}
    return {
        "version": healthd.__version__,
        "state_version": snapshot.generation,
        "draining": snapshot.draining,
        "started": store.started,
        "groups": {g: s.value for g, s in snapshot.groups.items()},
        "checks": checks,
        "inflight_checks": inflight,
    }


@web.middleware
async def require_token(request: web.Request, handler: base.Handler) -> web.StreamResponse:
    """401 unless the bearer token matches; the token is read per request (reloads apply)."""
    token = request.app[VIEWS].settings().server.token.get_secret_value()
    if not base.authorized(request, token):
        response = base.error(401, "missing or wrong bearer token")
        response.headers["WWW-Authenticate"] = 'Bearer realm="healthd-admin"'
        return response
    return await handler(request)


async def drain(request: web.Request) -> web.Response:
    control, fleet = request.app[CONTROL], request.app.get(FLEET)
    body: dict[str, Any] = {"draining": True}
    if fleet is not None and not control.draining:
        taken = await fleet.take_slot(force=request.query.get("force", "0").lower() in YES)
        if not taken.ok:
            held = ", ".join(taken.holders) or "nobody: max_draining is 0"
            message = f"fleet: no drain slot free (held by {held}); ?force=1 drains anyway"
            return web.json_response(
                {"error": message, "holders": taken.holders}, status=409, headers=base.NO_STORE
            )
        body |= {"slot": taken.slot} | ({"note": taken.note} if taken.note else {})
    if not control.draining:
        log.info("admin: drain requested (readiness now fails)")
    control.drain()
    return web.json_response(body)


async def ready(request: web.Request) -> web.Response:
    control = request.app[CONTROL]
    if control.shutting_down:
        return base.error(409, "shutting down: draining cannot be left")
    if control.draining:
        log.info("admin: ready requested (leaving draining)")
    fleet = request.app.get(FLEET)
    if fleet is not None:
        await fleet.give_slot()
    control.ready()
    return web.json_response({"draining": False})


async def reload(request: web.Request) -> web.Response:
    control = request.app[CONTROL]
    if control.shutting_down:
        return base.error(409, "shutting down: reload refused")
    result = await control.reload()
    body = asdict(result)
    if not result.ok:
        body["error"] = result.errors[0] if result.errors else "reload failed"
        return web.json_response(body, status=422)
    return web.json_response(body)


async def fleet_view(request: web.Request) -> web.Response:
    fleet = request.app.get(FLEET)
    if fleet is None:
        return base.error(404, "no fleet: the config has no `fleet:` section")
    return web.json_response(fleet.describe())


async def state(request: web.Request) -> web.Response:
    body = request.app[CONTROL].info()
    return web.json_response(body)


def _beat_body(raw: bytes) -> tuple[str, str]:
    """(status, message) from a heartbeat body; ValueError with a one-line reason."""
    try:
        data = json.loads(raw)
    except ValueError:
        raise ValueError("body: not valid JSON") from None
    if not isinstance(data, dict):
        raise ValueError('body: must be a JSON object like {"status": "pass"}')
    status, message = data.get("status"), data.get("message", "")
    if not isinstance(status, str):
        raise ValueError("status: required, one of pass, warn, fail")
    if not isinstance(message, str):
        raise ValueError("message: must be a string")
    unknown = sorted(set(data) - {"status", "message"})
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r:.40}")
    return status, message


async def heartbeat(request: web.Request) -> web.Response:
    """Post the beat to the store, run the check at once, answer with its state."""
    store = request.app[VIEWS].store
    name = request.match_info["check"]
    spec = store.spec(name)
    if spec is None or spec.kind != "heartbeat":
        return base.error(404, f"no heartbeat check {name!r:.70}")
    raw = await request.read()  # client_max_size: above 64 KiB → 413 (base.guard)
    try:
        status, message = _beat_body(raw)
        result = await request.app[CONTROL].beat(name, status, message)
    except ValueError as exc:
        return base.error(400, str(exc))
    after = store.check(name)
    return web.json_response(
        {
            "check": name,
            "status": after.status.value if after is not None else result.outcome.value,
            "last_outcome": result.outcome.value,
            "message": result.message,
        }
    )


def make_admin_app(
    views: Views,
    control: Control,
    middlewares: Sequence[Middleware] = (),
    fleet: Slots | None = None,
) -> web.Application:
    """The admin application; `middlewares` run inside the token check (the daemon's tracker)."""
    app = web.Application(
        client_max_size=base.MAX_BODY, middlewares=[base.guard, require_token, *middlewares]
    )
    app[VIEWS] = views
    app[CONTROL] = control
    if fleet is not None:
        app[FLEET] = fleet
    app.add_routes(
        [
            web.post("/admin/drain", drain),
            web.post("/admin/ready", ready),
            web.post("/admin/reload", reload),
            web.get("/admin/state", state),
            web.get("/admin/fleet", fleet_view),
            web.post("/heartbeat/{check}", heartbeat),
        ]
    )
    return app
