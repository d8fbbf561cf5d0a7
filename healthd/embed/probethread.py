"""The probes on a thread and an event loop of their own (reference §17: probes never queue
behind the app). An app saturated with requests answers its own `/readyz` seconds late,
so a load balancer notices the drain late and sends traffic to a pod that is stopping;
these answers do not wait for the app's loop.

    app's loop                                       probe thread (its own loop and port)
    store ─on_group─▶ Published.states (a dict) ───▶ GET /readyz → the bytes for that state
           └ expiry: a timer at store.next_expiry ─┘
    health.evaluate ◀── run_coroutine_threadsafe ──  an `on_demand` group, or ?fresh=1

ATTENTION: the probe thread reads only `Published.states` (written whole by the app's
loop: one dict store per change) and an `Answers` (swapped whole on reload); it never
touches the store, whose reads may expire results and tell observers. What needs a run
goes to the app's loop. Only status-only answers are served here (a token's details, ?verbose
and the per-check paths are on the app's port), and the probe counters stay the app's.
"""

from __future__ import annotations

import asyncio
import math
import socket
import threading

from aiohttp import hdrs, web

from healthd.checks.base import SpecBase
from healthd.config import Settings
from healthd.deadline import Deadline
from healthd.errors import BudgetError, ConfigError
from healthd.events import Observer
from healthd.groups import ENDPOINTS, GROUPS
from healthd.health import Health
from healthd.listeners import BACKLOG, bind
from healthd.model import CheckResult, CheckState, State
from healthd.web.base import error
from healthd.web.probes import CACHED_HEADERS, FLAGS, Answers

ONLY = "/livez, /readyz, /startupz and /health (status only)"
START_LIMIT = 5.0  # seconds the thread has to start listening
STOP_LIMIT = 5.0  # seconds it has to finish its answers and end
HOT = {f"/{name}": group for name, group in ENDPOINTS.items()}  # and /health, status only


class Published(Observer):
    """The groups' states as the app's loop last saw them, for the probe thread."""

    def __init__(self, health: Health) -> None:
        self.health, self.store = health, health.store
        self.states: dict[str, State] = {}
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """On the app's loop: read every state now (expiring what is due), keep it fresh."""
        self.states = {g: self.store.current(g) for g in GROUPS}
        self._arm()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def on_group(self, group: str, before: State | None, after: State) -> None:
        self.states = {**self.states, group: after}  # one store: the thread sees old or new

    def on_result(self, spec: SpecBase, result: CheckResult, state: CheckState) -> None:
        self._arm()

    def on_reload(self, settings: Settings) -> None:
        self.states = {g: self.store.current(g) for g in GROUPS}
        self._arm()

    def _arm(self) -> None:
        """A timer at the next moment a result may go stale: reading then expires it (and
        the change comes back through `on_group`). Results age without any run."""
        due = self.store.next_expiry
        if self._timer is not None:
            if self._timer.when() <= self._timer_at(due):
                return
            self._timer.cancel()
        self._timer = None
        if math.isfinite(due):
            loop = asyncio.get_running_loop()
            self._timer = loop.call_at(self._timer_at(due), self._expire)

    def _timer_at(self, due: float) -> float:
        return asyncio.get_running_loop().time() + max(0.0, due - self.store.clock())

    def _expire(self) -> None:
        self._timer = None
        for group in GROUPS:
            self.store.current(group)
        self._arm()


class ProbeThread:
    """`/livez`, `/readyz`, `/startupz`, `/health` on `address`, served by a thread of
    their own (status-only bodies)."""

    def __init__(self, health: Health, address: str) -> None:
        self.health, self.address = health, address
        self.published = Published(health)
        health.observe(self.published)
        self.answers = Answers(health.settings, health.store)
        health.on_reload(self._reconfigure)
        self.closing = False  # draining: answers close their connections
        self.port = 0
        self._main: asyncio.AbstractEventLoop | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def _reconfigure(self, settings: Settings) -> None:
        self.answers = Answers(settings, self.health.store)
        self.published.on_reload(settings)

    async def start(self) -> None:
        """On the app's loop: bind (ConfigError: cannot), publish, start the thread."""
        sock = bind(self.address, "server.listen")
        self.port = sock.getsockname()[1]
        self._main = asyncio.get_running_loop()
        self.published.start()
        self._thread = threading.Thread(
            target=self._run, args=(sock,), name="healthd-probes", daemon=True
        )
        self._thread.start()
        if not await asyncio.to_thread(self._ready.wait, START_LIMIT):
            raise ConfigError(f"server.listen: the probe thread did not start on {self.address}")

    async def stop(self) -> None:
        """End the thread (its answers in flight finish first); on the app's loop."""
        self.published.stop()
        loop, stop, thread = self._loop, self._stop, self._thread
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        if thread is not None:
            await asyncio.to_thread(thread.join, STOP_LIMIT)
        self._thread = None

    def _run(self, sock: socket.socket) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve(sock))
        finally:
            loop.close()

    async def _serve(self, sock: socket.socket) -> None:
        self._stop = asyncio.Event()
        runner = web.ServerRunner(
            web.Server(self._handle), handle_signals=False, keepalive_timeout=75.0,
            access_log=None, shutdown_timeout=1.0,
        )  # fmt: skip
        await runner.setup()
        await web.SockSite(runner, sock, backlog=BACKLOG).start()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        group = HOT.get(request.path)
        if group is None or request.method not in ("GET", "HEAD"):
            return self._finish(error(404, f"{request.path[:100]}: this port answers {ONLY}"))
        answers = self.answers
        try:
            budget = answers.budgets.parse(request.query, request.headers)
        except BudgetError as exc:
            return self._finish(error(400, str(exc)))
        fresh = FLAGS.get(request.query.get("fresh", "0").lower())
        if fresh is None:
            return self._finish(error(400, "?fresh: not a boolean (use 1 or 0)"))
        if group in answers.cacheable and not fresh:
            state = self.published.states[group]
        else:
            state = await self._evaluate(group, budget, answers.margin, fresh)
        code, body = answers.by_state[state]
        return self._finish(web.Response(body=body, status=code, headers=CACHED_HEADERS))

    async def _evaluate(self, group: str, budget: float, margin: float, fresh: bool) -> State:
        """Run what the answer needs on the app's loop, within the request's budget."""
        assert self._main is not None
        health = self.health
        deadline = Deadline.within(budget, margin, health.clock)
        future = asyncio.run_coroutine_threadsafe(
            health.evaluate(group, deadline, fresh=fresh), self._main
        )
        try:
            async with asyncio.timeout(budget):
                snapshot = await asyncio.wrap_future(future)
        except TimeoutError:
            future.cancel()
            return State.UNKNOWN  # the app's loop did not answer in time
        return snapshot.state

    def _finish(self, response: web.Response) -> web.StreamResponse:
        if self.closing:
            response.force_close()
            response.headers[hdrs.CONNECTION] = "close"
        return response


def listen_of(health: Health, listen: str | None) -> str | None:
    """The probe thread's address: `listen`, else `server.listen` when it was set."""
    if listen is not None:
        return listen
    server = health.settings.server
    return server.listen if "listen" in server.model_fields_set else None
