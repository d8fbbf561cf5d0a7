"""The probe listener (reference §5): /livez /readyz /startupz, per-check paths, /health.

Handlers parse the request, ask the runs for an evaluation when something must run,
and read everything else from the store: every bad input is a 4xx with a one-line
message, never a 500.

A status-only answer for a group with nothing to run is the group's state from the
store's tallies (O(1)) and bytes rendered once per state: that is the hot path of a
probe listener (bench/throughput.py and bench/instructions.py measure it against bare
aiohttp). It sits in front of the router (`front`): no routing, no handler coroutine, and
one dict lookup on the raw headers (`Answers.known`) decides the budget, so it costs no
more Python calls than a bare aiohttp handler does.
"""

from __future__ import annotations

from collections.abc import Sequence
from time import perf_counter
from typing import Protocol

from aiohttp import web
from aiohttp.typedefs import Middleware
from multidict import MultiMapping

from healthd.config import Settings
from healthd.deadline import Budgets, Deadline
from healthd.errors import BudgetError
from healthd.groups import CHECK_PATHS, ENDPOINTS, GROUPS, READINESS
from healthd.health import Views
from healthd.model import State
from healthd.runs import Evaluation
from healthd.store import Store
from healthd.watchers import Watchers
from healthd.web import render, status, watch
from healthd.web.base import MAX_BODY, Asked, Handler, InFlight, authorized, error

VIEWS = web.AppKey("views", Views)
WATCH = web.AppKey("watch", watch.Watch)  # tests shorten its keep-alive and stall times
JSON = "application/json"
CACHED_HEADERS = {"Content-Type": JSON, "Cache-Control": "no-store"}
# Envoy marks a host degraded when its health check's answer carries this (reference §18).
ENVOY_DEGRADED = {"x-envoy-degraded": "true"}
_UNKNOWN = -1.0  # not a budget: `Answers.known` has not seen these headers
FLAGS = {"": True, "1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


class ProbeCounter(Protocol):
    """Where answered probes are counted (observers.metrics.Metrics.probe): `code` is what
    went on the wire, an HTTP status or a gRPC serving status's name."""

    def probe(self, endpoint: str, code: int | str, duration: float, budget: float) -> None: ...


class Answers:
    """What the answers take from the settings, rebuilt when a reload replaces them
    (`Probes.reconfigure`, told by the core: the hot path never polls for it)."""

    __slots__ = (
        "always", "budgets", "by_state", "cacheable", "known", "margin", "settings", "token"
    )  # fmt: skip

    KNOWN = 256  # distinct header sets remembered for the hot path

    def __init__(self, settings: Settings, store: Store) -> None:
        server, cfg = settings.server, settings.deadline
        self.settings = settings
        # Groups with nothing to run on a probe (no `on_demand` member): a status-only answer
        # is their state. The store was configured from these settings before they were set.
        self.cacheable = frozenset(g for g in GROUPS if not store.on_demand(g))
        self.by_state = {s: (server.status_codes[s], render.status_body(s)) for s in State}
        self.budgets = Budgets(cfg.default, cfg.max, cfg.offset)
        self.margin = cfg.margin
        self.always = server.show_details == "always"  # details without a token: never cached
        self.token = server.token.get_secret_value() if server.show_details != "never" else ""
        # The request's raw headers (a tuple of byte pairs, hashable) → the budget a cached,
        # status-only answer takes, or None when these headers need the slow path. A kubelet
        # or a load balancer sends the same headers every time: one dict lookup decides.
        self.known: dict[tuple[tuple[bytes, bytes], ...], float | None] = {}

    def details(self, request: Asked) -> bool:
        return self.always or authorized(request, self.token)

    def learn(self, request: web.BaseRequest) -> float | None:
        """Decide (and remember) whether these headers may take the cached answer: None when
        they may show details (a token, `always`), ask for the health+json body, or carry a
        budget header not seen before (the slow path parses it, or answers 400)."""
        headers = request.headers
        if "Authorization" in headers:
            return None  # a token may show details; and a token is never kept as a key
        if self.always or render.HEALTH_JSON in headers.get("Accept", ""):
            budget = None
        else:
            budget = self.budgets.fast(headers)
            if budget is None:
                return None  # not remembered: once `parse` has seen the text, `fast` knows it
        if len(self.known) < self.KNOWN:
            self.known[request.raw_headers] = budget
        return budget


class Probes:
    """The probe handlers of one app, sharing the settings-derived answers and a renderer."""

    def __init__(self, views: Views, inflight: InFlight, metrics: ProbeCounter | None) -> None:
        self.views, self.store, self.inflight, self.metrics = views, views.store, inflight, metrics
        self.renderer = render.Renderer()
        self._answers = Answers(views.settings(), views.store)
        views.on_reload(self.reconfigure)

    def reconfigure(self, settings: Settings) -> None:
        """A reload swapped the settings (the store was configured from them first)."""
        self._answers = Answers(settings, self.store)

    def answers(self) -> Answers:
        return self._answers

    def front(self, server: web.Server, prefix: str = "") -> None:
        """Put the hot path in front of `server`'s router: a GET of `/livez`, `/readyz` or
        `/startupz` (no query; under `prefix` when the probes are mounted there) whose answer
        is the group's state is answered here, without routing; everything else goes on to
        the application, whose handlers give the same answer the long way (so an app served
        without this front is still right)."""
        routed = server.request_handler
        hot = {
            f"{prefix}/{name}": (name, group, _Headers(group)) for name, group in ENDPOINTS.items()
        }
        store, inflight = self.store, self.inflight
        count = self.metrics.probe if self.metrics is not None else None
        unknown = _UNKNOWN

        async def dispatch(request: web.BaseRequest) -> web.StreamResponse:
            # ATTENTION: the hot path (bench/instructions.py: at parity with a bare aiohttp
            # handler; ~1.5 % fewer instructions than the routed way). Every condition is a
            # plain lookup. `raw_path` keeps the query: "/readyz?x" is not hot.
            target = hot.get(request.raw_path)
            if target is not None and request.method == "GET" and not inflight.closing:
                started = perf_counter()
                endpoint, group, headers = target
                answers = self._answers
                if group in answers.cacheable:
                    budget = answers.known.get(request.raw_headers, unknown)
                    if budget is unknown:
                        budget = answers.learn(request)
                    if budget is not None:
                        state = store.current(group)
                        code, body = answers.by_state[state]
                        inflight.served += 1
                        if count is not None:
                            count(endpoint, code, perf_counter() - started, budget)
                        return web.Response(body=body, status=code, headers=headers[state, code])
            return await routed(request)

        server.request_handler = dispatch

    def handler(self, endpoint: str) -> Handler:
        """The handler for `/{endpoint}` and `/{endpoint}/{check}` (the long way)."""
        group, finish = ENDPOINTS[endpoint], self.inflight.finish

        async def probe(request: web.Request) -> web.StreamResponse:
            return finish(await self.answer(request, endpoint, group, perf_counter()))

        return probe

    async def answer(
        self, request: Asked, endpoint: str, group: str, started: float
    ) -> web.Response:
        """The answer to a probe (aiohttp's or, through embed/asgi.py, an ASGI server's)."""
        views, answers = self.views, self._answers
        check = request.match_info.get("check")
        if check is not None and not self.store.has(group, check):
            return error(404, f"no check {check!r} in group {group!r}")
        try:
            budget = answers.budgets.parse(request.query, request.headers)
        except BudgetError as exc:
            return error(400, str(exc))
        history = _history(request.query)
        if isinstance(history, web.Response):
            return history
        deadline = Deadline.within(budget, answers.margin, self.store.clock)
        with self.inflight.track(request):
            evaluation = await _evaluate(request, views, group, deadline, check)
        if isinstance(evaluation, web.Response):
            return evaluation  # a bad parameter: 400
        response = self.respond(request, endpoint, evaluation, answers, history)
        if _envoy_degraded(group, evaluation.state, response.status):
            response.headers.update(ENVOY_DEGRADED)
        if self.metrics is not None:
            self.metrics.probe(endpoint, response.status, perf_counter() - started, budget)
        return response

    def respond(
        self,
        request: Asked,
        endpoint: str,
        evaluation: Evaluation,
        answers: Answers,
        history: int | None = None,
    ) -> web.Response:
        code, status_only = answers.by_state[evaluation.state]
        details = answers.details(request)
        if "verbose" in request.query:
            snapshot = evaluation.snapshot(self.store)
            text = render.render_verbose(snapshot, endpoint, code < 400, details)
            return web.Response(text=text, status=code)
        if render.HEALTH_JSON in request.headers.get("Accept", ""):
            snapshot = evaluation.snapshot(self.store)
            body = self.renderer.health_json(snapshot, details)
            return web.Response(body=body, status=code, content_type=render.HEALTH_JSON)
        if details and history is not None:  # `?history=N`: per request, never cached
            store = self.store
            view = render.snapshot_view(
                evaluation.snapshot(store), True, lambda name: store.history(name, history)
            )
            return web.Response(body=render.dumps(view), status=code, content_type=JSON)
        if details:
            body = self.renderer.json(evaluation.snapshot(self.store), True)
            return web.Response(body=body, status=code, content_type=JSON)
        return web.Response(body=status_only, status=code, content_type=JSON)


PROBES = web.AppKey("probes", Probes)


def _envoy_degraded(group: str, state: State, code: int) -> bool:
    """A 2xx readiness answer while degraded carries `x-envoy-degraded` (reference §18)."""
    return group == READINESS and state is State.DEGRADED and 200 <= code < 300


class _Headers(dict[tuple[State, int], dict[str, str]]):
    """The cached answer's headers by (state, code): `x-envoy-degraded` where it applies."""

    def __init__(self, group: str) -> None:
        super().__init__()
        self.group = group

    def __missing__(self, key: tuple[State, int]) -> dict[str, str]:
        state, code = key
        headers = CACHED_HEADERS
        if _envoy_degraded(self.group, state, code):
            headers = {**CACHED_HEADERS, **ENVOY_DEGRADED}
        self[key] = headers
        return headers


async def _evaluate(
    request: Asked, views: Views, group: str, deadline: Deadline, check: str | None
) -> Evaluation | web.Response:
    exclude = request.query.getall("exclude", [])
    fresh = FLAGS.get(request.query.get("fresh", "0").lower())  # a bare ?fresh is "": fresh
    if fresh is None:
        return error(400, f"?fresh: {request.query['fresh']!r:.40} is not a boolean (use 1 or 0)")
    return await views.evaluate(group, deadline, fresh=fresh, exclude=exclude, only=check)


HISTORY_LIMIT = 1_000_000


def _history(query: MultiMapping[str]) -> int | web.Response | None:
    """`?history=N`: each check's last N results (a bare `?history`: all kept); a 400 for
    anything but a whole number from 0 to HISTORY_LIMIT."""
    if "history" not in query:
        return None
    raw = query.get("history", "")
    if raw == "":
        return HISTORY_LIMIT
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 7 or int(raw) > HISTORY_LIMIT:
        return error(400, f"?history: {raw!r:.40} is not a number of results (0 to 1000000)")
    return int(raw)


def make_app(
    views: Views,
    extra_routes: list[web.RouteDef] | None = None,
    middlewares: Sequence[Middleware] = (),
    inflight: InFlight | None = None,
    metrics: ProbeCounter | None = None,
    watchers: Watchers | None = None,
) -> web.Application:
    """The probe application; telemetry adds `/metrics` (`extra_routes`), trace context
    continuation (`middlewares`) and the probe counter (`metrics`); the daemon's `watchers`
    bound the `/watch` streams (and end them when the listeners close)."""
    app = web.Application(client_max_size=MAX_BODY, middlewares=list(middlewares))
    inflight = inflight or InFlight()
    app[VIEWS] = views
    probes = app[PROBES] = Probes(views, inflight, metrics)
    handlers = {name: probes.handler(name) for name in ENDPOINTS}
    routes = [web.get(f"/{name}", handler) for name, handler in handlers.items()]
    routes += [web.get(f"/{name}/{{check}}", handlers[name]) for name in CHECK_PATHS]
    # The views for people and streams: details by the probe bodies' rule (Answers.details).
    if watchers is None:
        watchers = Watchers(views.settings().server.max_watchers)
    keepalive = views.settings().server.watch_keepalive
    app[WATCH] = streams = watch.Watch(
        views.store, watchers, lambda r: probes.answers().details(r), keepalive=keepalive
    )
    routes += watch.routes(streams)
    routes += status.routes(views.store, inflight, lambda r: probes.answers().details(r))
    for route in extra_routes or []:
        assert isinstance(route, web.RouteDef)
        routes.append(web.route(route.method, route.path, inflight.wrap(route.handler)))
    paths = [r.path for r in routes]

    async def not_allowed(request: web.Request) -> web.StreamResponse:
        return inflight.finish(error(405, f"{request.method} {request.path}: use GET"))

    async def not_found(request: web.Request) -> web.StreamResponse:
        return inflight.finish(error(404, f"{request.path}: no such path"))

    routes += [web.route("*", path, not_allowed) for path in paths]
    routes.append(web.route("*", "/{tail:.*}", not_found))
    app.add_routes(routes)
    return app


def front(app: web.Application, server: web.Server) -> None:
    """Serve `app`'s hot path in front of its router (`Probes.front`); call it once the
    runner is set up, before the listener accepts (lifecycle.Daemon.serve, the tests)."""
    app[PROBES].front(server)
