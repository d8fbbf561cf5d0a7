"""The probe listener (DESIGN §5): /livez /readyz /startupz, per-check paths, /health.

Handlers only parse the request, ask the engine, and pick a renderer: every bad input
is a 4xx with a one-line message, never a 500.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

from aiohttp import web
from aiohttp.typedefs import Middleware

from healthd import render
from healthd.deadline import Deadline, inbound_budget
from healthd.engine import Engine
from healthd.errors import BudgetError
from healthd.model import Snapshot, State

MAX_BODY = 64 * 1024
ENGINE = web.AppKey("engine", Engine)
CACHE = web.AppKey("cache", dict[str, "_Cached"])
ENDPOINTS = {"livez": "liveness", "readyz": "readiness", "startupz": "startup", "health": "health"}
NO_STORE = {"Cache-Control": "no-store"}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=NO_STORE)


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """HTTP errors as one-line JSON with `no-store` (the admin API's error shape)."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error(exc.status, exc.reason)
    response.headers.update(NO_STORE)
    return response


async def no_store(_: web.Request, response: web.StreamResponse) -> None:
    """Every answer, errors from aiohttp's router included, is `Cache-Control: no-store`.

    A response-prepare signal rather than a middleware: it costs less on the hot path.
    """
    response.headers["Cache-Control"] = "no-store"


def authorized(request: web.Request, token: str) -> bool:
    """A valid `Authorization: Bearer <token>`, compared in constant time."""
    if not token:
        return False
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


def show_details(request: web.Request, engine: Engine) -> bool:
    server = engine.settings.server
    if server.show_details == "always":
        return True
    if server.show_details == "never":
        return False
    return authorized(request, server.token.get_secret_value())


def status_code(engine: Engine, state: State) -> int:
    return engine.settings.server.status_codes[state]


def request_deadline(request: web.Request, engine: Engine) -> tuple[Deadline, float]:
    """(deadline after the margin, the caller's budget) from the request; BudgetError → 400."""
    cfg = engine.settings.deadline
    budget = inbound_budget(
        request.query, request.headers, default=cfg.default, maximum=cfg.max, offset=cfg.offset
    )
    return Deadline(engine.clock() + budget - cfg.margin, engine.clock), budget


def respond(
    request: web.Request, engine: Engine, endpoint: str, snapshot: Snapshot
) -> web.Response:
    code = status_code(engine, snapshot.state)
    details = show_details(request, engine)
    if "verbose" in request.query:
        text = render.render_verbose(snapshot, endpoint, code < 400, details)
        return web.Response(text=text, status=code)
    if render.HEALTH_JSON in request.headers.get("Accept", ""):
        body = render.render_health_json(snapshot, details)
        return web.Response(body=body, status=code, content_type=render.HEALTH_JSON)
    return web.Response(
        body=render.render_json(snapshot, details), status=code, content_type="application/json"
    )


@dataclass(frozen=True, slots=True)
class _Cached:
    version: int
    until: float
    status: int
    body: bytes


def _plain(request: web.Request, engine: Engine) -> bool:
    """A status-only JSON answer with nothing to run: the same bytes until something changes."""
    return (
        not request.query_string
        and not request.match_info
        and (engine.settings.server.show_details == "never" or not show_details(request, engine))
        and render.HEALTH_JSON not in request.headers.get("Accept", "")
    )


async def probe(request: web.Request) -> web.Response:
    """A group endpoint, or one check of it (`/readyz/{check}`)."""
    engine = request.app[ENGINE]
    started = time.perf_counter()
    endpoint = request.path.strip("/").split("/")[0]
    group = ENDPOINTS[endpoint]
    check = request.match_info.get("check")
    if check is not None and check not in engine.members(group):
        return error(404, f"no check {check!r} in group {group!r}")
    try:
        deadline, budget = request_deadline(request, engine)
    except BudgetError as exc:
        return error(400, str(exc))
    cache = request.app[CACHE]
    hit = cache.get(endpoint)
    plain = _plain(request, engine)
    if plain and hit and hit.version == engine.version and engine.clock() < hit.until:
        response = web.Response(body=hit.body, status=hit.status, content_type="application/json")
    else:
        horizon = engine.horizon(group) if plain else None
        version = engine.version
        response = await _evaluate(request, engine, endpoint, group, deadline, check)
        if horizon is not None and isinstance(response.body, bytes):
            cache[endpoint] = _Cached(version, horizon, response.status, response.body)
    for observer in engine.observers:
        observer.on_probe(endpoint, response.status, time.perf_counter() - started, budget)
    return response


async def _evaluate(
    request: web.Request,
    engine: Engine,
    endpoint: str,
    group: str,
    deadline: Deadline,
    check: str | None,
) -> web.Response:
    exclude = request.query.getall("exclude", [])
    fresh = request.query.get("fresh", "0") not in ("0", "false", "")
    snapshot = await engine.evaluate(group, deadline, fresh=fresh, exclude=exclude, only=check)
    if group == "health":
        groups = {g: engine.group_state(g, engine.states(engine.members(g))) for g in
                  ("readiness", "liveness", "startup")}  # fmt: skip
        snapshot = replace(snapshot, extra={"groups": {g: s.value for g, s in groups.items()}})
    return respond(request, engine, endpoint, snapshot)


def make_app(
    engine: Engine,
    extra_routes: list[web.RouteDef] | None = None,
    middlewares: Sequence[Middleware] = (),
) -> web.Application:
    """The probe application; observers add `/metrics` (`extra_routes`) and trace context
    continuation (`middlewares`)."""
    app = web.Application(client_max_size=MAX_BODY, middlewares=list(middlewares))
    app.on_response_prepare.append(no_store)
    app[ENGINE] = engine
    app[CACHE] = {}
    routes = [web.get(f"/{name}", probe) for name in ENDPOINTS]
    routes += [web.get(f"/{name}/{{check}}", probe) for name in ("livez", "readyz")]
    app.add_routes(routes + list(extra_routes or []))
    return app
