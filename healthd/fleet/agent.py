"""The fleet's background task (reference §14): lease, publish, watch, the panic rule, drain slots.

    connect   grant a lease (ttl), publish this instance's report on it, read the prefix,
              watch it from that revision; the store learns which `shared` checks settle
    run       keep-alive every ttl/3; on every store transition or watch event: decide the
              rule for each shared check failing here (view.Rule), apply it to the store
              (Store.excuse), publish the report if it changed (transitions, never runs)
    trouble   any etcd failure ends the session: the store is told (local semantics at
              once), one log line per change, reconnect after a capped, jittered backoff

Nothing here is on the request path: probes read the store, which holds the outcome. The
admin API's drain and ready call `take_slot`/`give_slot`, each bounded by the etcd timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, NoReturn

from healthd.durations import format_duration
from healthd.fleet.etcd import Etcd, EtcdError
from healthd.fleet.settings import FleetSettings
from healthd.fleet.slots import Slots, Taken
from healthd.fleet.view import INSTANCES, Decision, Report, Rule, View
from healthd.store import Store

log = logging.getLogger("healthd.fleet")
BACKOFF_MIN, BACKOFF_MAX = 0.2, 5.0
CALL_TIMEOUT = 1.0
STOP_TIMEOUT = 1.0


class Fleet:
    """One per daemon with `fleet:` configured."""

    def __init__(
        self,
        settings: FleetSettings,
        store: Store,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.settings, self.store, self.clock, self.wall = settings, store, clock, wall
        self.me = settings.instance
        timeout = min(CALL_TIMEOUT, settings.ttl / 3)
        self.etcd = Etcd(settings.endpoints, settings.credentials, timeout)
        self.view = View(settings.prefix)
        self.rule = Rule(settings.panic_threshold, settings.settle_window)
        self.connected = False
        self.problem = ""
        self.lease = 0
        self.slots = Slots(self.etcd, settings.prefix, self.me, settings.max_draining, self.view)
        self.decisions: dict[str, Decision] = {}
        self.published: Report | None = None
        self.publishes = 0
        self._poke = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._logged = ""  # the last connection line logged ("" none yet)
        self._old_lease = 0

    @property
    def key(self) -> str:
        return f"{self.settings.prefix}{INSTANCES}{self.me}"

    # --- start and stop ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="healthd-fleet")

    async def stop(self) -> None:
        """Leave the fleet: revoke the lease (the report and any slot go with it), close."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        lease, self.lease = self.lease or self._old_lease, 0
        if lease:
            with contextlib.suppress(EtcdError):
                await self.etcd.revoke(lease, STOP_TIMEOUT)
        await self.etcd.close()

    async def _run(self) -> None:
        backoff = BACKOFF_MIN
        while True:
            started = self.clock()
            try:
                await self._session()  # only ever ends by raising
            except EtcdError as exc:
                problem = str(exc)
            except Exception as exc:  # never crash the daemon: log, retry
                log.exception("fleet: unexpected error")
                problem = type(exc).__name__
            self._lost(problem)
            if self.clock() - started > self.settings.ttl:
                backoff = BACKOFF_MIN  # it had been up a while: retry quickly
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
            backoff = min(backoff * 2, BACKOFF_MAX)

    # --- one session ------------------------------------------------------------------------------

    async def _session(self) -> NoReturn:
        kept, self._old_lease = self._old_lease, 0
        if kept and await self.etcd.keepalive(kept) > 0:
            self.lease = kept  # a short outage: the report and any slot are still there
        else:
            self.lease = await self.etcd.grant(math.ceil(self.settings.ttl))
        self.published = None
        await self._publish(self._report(self._failing()))
        revision, kvs = await self.etcd.range(self.settings.prefix)
        self.view.load(revision, kvs)
        stream = self.etcd.watch(self.settings.prefix, revision)
        try:
            async with asyncio.timeout(self.etcd.timeout):
                await anext(stream)  # the `created` answer: the watch is in place
            self._up()
            await _first_error(
                self._keepalive(self.lease),
                self._follow(stream),
                self._follow_store(),
                self._react_loop(),
                self._reconcile_slot(),
            )
        finally:
            await stream.aclose()

    def _up(self) -> None:
        self.connected, self.problem = True, ""
        shared = self.shared()
        settle = format_duration(self.rule.settle)
        self.store.set_lenient(
            {n: f"fleet: {n} failing here; settling {settle} before it counts" for n in shared}
        )
        if self._logged != "up":
            log.info(
                "fleet: connected to etcd %s as %r in %r (%d instances)", self.etcd.endpoint,
                self.me, self.settings.service, len(self.view.reports),
            )  # fmt: skip
            self._logged = "up"
        self._poke.set()

    def _lost(self, problem: str) -> None:
        self._old_lease = self.lease  # the next session tries to keep it alive first
        self.connected, self.lease, self.problem = False, 0, problem
        self.store.set_lenient({})  # local semantics at once: every excuse withdrawn
        self.decisions.clear()
        self.rule = Rule(self.settings.panic_threshold, self.settings.settle_window)
        self.view.load(0, {})
        if self._logged != "down":
            log.warning("fleet: etcd unreachable (%s); local semantics until it answers", problem)
            self._logged = "down"

    async def _keepalive(self, lease: int) -> None:
        while True:
            await asyncio.sleep(self.settings.ttl / 3)
            if await self.etcd.keepalive(lease) <= 0:
                raise EtcdError("etcd: our lease expired (etcd lost it, or we were too late)")

    async def _follow(self, stream: Any) -> None:
        async for batch in stream:
            changed = False
            for kind, key, value in batch:
                if self.view.apply(kind, key, value):
                    changed = True
                    if log.isEnabledFor(logging.DEBUG):  # bench/fleet.py times these lines
                        log.debug("fleet: view: %s", self._describe(key))
            if changed:
                self._poke.set()
        raise EtcdError("etcd watch: the stream ended")

    async def _follow_store(self) -> None:
        async for _ in self.store.changes():
            self._poke.set()

    async def _react_loop(self) -> None:
        while True:
            wait = self.rule.next_change(self.clock()) - self.clock()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, wait) if math.isfinite(wait) else None):
                    await self._poke.wait()
            self._poke.clear()
            await self._react()

    def _describe(self, key: str) -> str:
        rest = key[len(self.settings.prefix) :]
        if rest.startswith(INSTANCES):
            name = rest[len(INSTANCES) :]
            report = self.view.reports.get(name)
            return f"{name} {report.state if report is not None else 'left'}"
        return rest

    # --- the rule and the report ------------------------------------------------------------------

    def shared(self) -> tuple[str, ...]:
        """The critical `shared` checks: the store finds them once per configure (a walk of
        every spec on each transition would be O(N) per result)."""
        return self.store.shared()

    def _failing(self) -> frozenset[str]:
        """This instance's shared checks failing locally (the facts it publishes)."""
        out = []
        for name in self.shared():
            state = self.store.check(name)
            if state is not None and state.status.failing:
                out.append(name)
        return frozenset(out)

    def _report(self, failing: frozenset[str]) -> Report:
        groups = {g: s.value for g, s in self.store.group_states().items()}
        return Report(self.me, groups, self.store.draining, failing, self.wall())

    async def _react(self) -> None:
        shared = self.shared()
        if set(shared) != set(self.store.lenient):  # a reload changed which checks are shared
            self._up()
        failing, now = self._failing(), self.clock()
        me = Report(self.me, {}, self.store.draining, failing)
        for name in shared:
            if name not in failing:
                self.rule.forget(name)
                self._apply(name, None)
                continue
            count, live = self.view.counts(name, me)
            self._apply(name, self.rule.decide(name, count, live, now))
        for name in [n for n in self.decisions if n not in shared]:
            self._apply(name, None)
        await self._publish(self._report(failing))

    def _apply(self, name: str, decision: Decision | None) -> None:
        before = self.decisions.pop(name, None)
        if decision is None or decision.rule == "counted":
            self.store.excuse(name, None)
        else:
            self.decisions[name] = decision
            self.store.excuse(name, decision.reason, panic=decision.panic)
        was, now = before is not None and before.panic, decision is not None and decision.panic
        if now and not was:
            assert decision is not None
            log.warning("%s", decision.reason)
        elif was and not now:
            log.info("fleet: panic over for %s", name)

    async def _publish(self, report: Report) -> None:
        if report.same(self.published):
            return
        await self.etcd.put(self.key, report.encode(), self.lease)
        self.published = report
        self.publishes += 1

    # --- drain slots ------------------------------------------------------------------------------

    async def take_slot(self, force: bool = False) -> Taken:
        """Take one of `max_draining` slots (POST /admin/drain, SIGTERM); bounded by the
        etcd timeout per slot tried."""
        return await self.slots.take(self.lease if self.connected else 0, force)

    async def give_slot(self) -> None:
        await self.slots.give(self.connected)

    def describe(self) -> dict[str, Any]:
        """GET /admin/fleet's body (exposed.py)."""
        from healthd.fleet.exposed import describe  # exposed.py reads this module

        return describe(self)

    @property
    def slot(self) -> int | None:
        return self.slots.held

    async def _reconcile_slot(self) -> None:
        await self.slots.reconcile(self.lease)
        await asyncio.Event().wait()  # a member of the session's tasks: lives as long as it

    def on_signal(self, spawn: Callable[[Coroutine[Any, Any, Any]], None]) -> None:
        """SIGTERM drains at once (the daemon did); take a slot too if one is free."""
        spawn(self._signal_slot())

    async def _signal_slot(self) -> None:
        taken = await self.take_slot()
        if taken.slot is not None:
            log.info("fleet: drain slot %d taken for the shutdown", taken.slot)
        elif taken.holders:
            holders = ", ".join(taken.holders)
            log.info("fleet: no drain slot free (held by %s); draining anyway", holders)


async def _first_error(*coroutines: Awaitable[None]) -> NoReturn:
    """Run them together until one ends (raising); cancel the rest; raise what it raised."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        exc = task.exception()
        if exc is not None:
            raise exc
    raise EtcdError("fleet: a session task ended")
