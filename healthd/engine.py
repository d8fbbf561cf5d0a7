"""The engine: owns the checks, their states, background runs and coalesced on-demand runs.

    scheduler loop ─┐
    probe request ──┴─▶ _join(name, deadline) ─▶ one in-flight run per check ─▶ runner.run
                                                        └─▶ record: evaluator → observers

ATTENTION: a run is an asyncio.Task held in `_inflight` until it has recorded its
result; requests wait on it through `asyncio.shield`, so a caller whose deadline
passes stops waiting without cancelling a run that others (or the state) still need.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

from opentelemetry import trace
from opentelemetry.trace import StatusCode, Tracer

from healthd import runner
from healthd.aggregator import aggregate
from healthd.checks.base import Check, SpecBase
from healthd.config import Settings
from healthd.deadline import Clock, Deadline
from healthd.durations import human_duration
from healthd.evaluator import evaluate, freshness
from healthd.model import CheckResult, CheckState, Outcome, Reason, Snapshot, State, Status
from healthd.scheduler import Scheduler, Sleep

log = logging.getLogger("healthd")
GROUPS = ("readiness", "liveness", "startup", "health")


class Observer:
    """Reacts to what the engine sees. Subclasses override what they need; all run inline."""

    def on_result(self, spec: SpecBase, result: CheckResult, state: CheckState) -> None:
        """Every finished run, with the state after it."""

    def on_transition(self, spec: SpecBase, before: CheckState, after: CheckState) -> None:
        """A check's status changed."""

    def on_group(self, group: str, before: State | None, after: State) -> None:
        """A group's state changed (seen at an evaluation)."""

    def on_probe(self, endpoint: str, code: int, duration: float, budget: float) -> None:
        """A probe request was answered."""

    def on_reload(self, ok: bool) -> None:
        """A config reload was attempted (ok=False: the file was invalid and nothing changed)."""


@dataclass(frozen=True, slots=True)
class _Run:
    task: asyncio.Task[CheckResult]
    started: float


@dataclass(slots=True)
class _Entry:
    spec: SpecBase
    check: Check
    state: CheckState


class Engine:
    """Runs checks and answers `evaluate(group, deadline)`; one per daemon."""

    def __init__(
        self,
        settings: Settings,
        *,
        observers: Sequence[Observer] = (),
        tracer: Tracer | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        wall: Clock = time.time,
        build: Callable[[SpecBase], Check] | None = None,
    ) -> None:
        self.settings = settings
        self.build = build or _build  # tests inject FakeChecks here
        self.observers = list(observers)
        self.tracer = tracer or trace.get_tracer("healthd")
        self.clock, self.wall = clock, wall
        self.scheduler = Scheduler(self._background, clock, sleep)
        self.draining = False
        self.started = False  # startup latch: every critical readiness check has passed once
        self.version = (
            0  # bumped on every recorded result and drain change; render caches key on it
        )
        self._entries: dict[str, _Entry] = {}
        self._members: dict[str, list[str]] = {}
        self._inflight: dict[str, _Run] = {}
        self._groups: dict[str, State] = {}
        self._configure(settings)

    # --- configuration -------------------------------------------------------------------------

    def _configure(self, settings: Settings) -> None:
        old = self._entries
        self._entries = {}
        for spec in settings.all_checks:
            kept = old.get(spec.name)
            if kept is not None and kept.spec == spec:
                self._entries[spec.name] = kept  # unchanged spec: keep its state and history
            else:
                state = CheckState(spec.name, spec.kind, spec.critical)
                self._entries[spec.name] = _Entry(spec, self.build(spec), state)
        self.settings = settings
        self._members = {g: settings.members(g) for g in GROUPS}
        self.version += 1

    async def reload(self, settings: Settings) -> tuple[list[str], list[str], list[str]]:
        """Apply new settings; unchanged checks keep state. Returns (added, removed, changed)."""
        before = {n: e.spec for n, e in self._entries.items()}
        self._configure(settings)
        added = [n for n in self._entries if n not in before]
        removed = [n for n in before if n not in self._entries]
        changed = [n for n in self._entries if n in before and before[n] != self._entries[n].spec]
        for name in removed + changed:
            await self.scheduler.remove(name)
        for name in added + changed:
            self.scheduler.add(self._entries[name].spec)
        return added, removed, changed

    def spec(self, name: str) -> SpecBase | None:
        entry = self._entries.get(name)
        return entry.spec if entry else None

    def check(self, name: str) -> Check | None:
        entry = self._entries.get(name)
        return entry.check if entry else None

    def members(self, group: str) -> list[str]:
        return self._members.get(group, [])

    def set_draining(self, draining: bool) -> None:
        self.draining = draining
        self.version += 1
        self._refresh_groups()

    # --- background runs (scheduler.py) -------------------------------------------------------

    def start(self) -> None:
        """Start one background loop per `background` check."""
        self.scheduler.start([e.spec for e in self._entries.values()])

    async def stop(self) -> None:
        """Cancel background loops and in-flight runs, and wait for them."""
        await self.scheduler.stop()
        tasks = [r.task for r in self._inflight.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _background(self, name: str, deadline: Deadline) -> CheckResult:
        return await self._join(name, deadline, background=True)

    # --- runs ----------------------------------------------------------------------------------

    def inflight(self) -> dict[str, float]:
        """Checks running now, with the age of each run in seconds."""
        now = self.clock()
        return {n: now - r.started for n, r in self._inflight.items()}

    async def run_now(self, name: str) -> CheckResult:
        """Run `name` now within its own timeout and record the result (a posted heartbeat)."""
        spec = self._entries[name].spec
        return await self._join(name, Deadline.after(spec.timeout, self.clock))

    async def _join(self, name: str, deadline: Deadline, background: bool = False) -> CheckResult:
        """This check's result within `deadline`, sharing a run already in flight."""
        spec = self._entries[name].spec  # read now: a reload may drop the entry while we wait
        run = self._inflight.get(name)
        if run is None:
            entry = self._entries[name]
            task = asyncio.get_running_loop().create_task(
                self._execute(entry, deadline, background), name=f"run:{name}"
            )
            run = self._inflight[name] = _Run(task, self.clock())
        if background:  # nobody waits on it but the scheduler: the run bounds itself
            return await asyncio.shield(run.task)
        try:
            async with asyncio.timeout(max(0.0, deadline.at - self.clock())):
                return await asyncio.shield(run.task)
        except TimeoutError:
            # The shared run outlives this caller's budget: report a timeout to this caller only.
            budget = min(spec.timeout, max(0.0, deadline.at - run.started))
            return CheckResult(
                name, spec.kind, Outcome.TIMEOUT, Reason.TIMEOUT,
                f"timeout after {human_duration(budget)}",
                self.clock() - run.started, run.started, self.wall(), budget,
            )  # fmt: skip

    async def _execute(self, entry: _Entry, deadline: Deadline, background: bool) -> CheckResult:
        spec = entry.spec
        if background:
            # check.timeout from when the run starts: a loop that lagged between scheduling
            # and here must not eat the budget (a loop check would time out "after 0ms").
            deadline = Deadline.after(spec.timeout, self.clock)
        try:
            limit = min(spec.timeout, deadline.remaining())
            with self.tracer.start_as_current_span(
                "healthd.check",
                attributes={
                    "healthd.check.name": spec.name,
                    "healthd.check.kind": spec.kind,
                    "healthd.check.timeout_ms": round(limit * 1000, 3),
                    "healthd.check.background": background,
                },
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                result = await runner.run(spec, entry.check, deadline, wall=self.wall)
                span.set_attribute("healthd.check.outcome", result.outcome.value)
                span.set_attribute("healthd.check.reason", result.reason.value)
                if not result.outcome.good:
                    span.set_status(StatusCode.ERROR, result.message)
            self._record(entry, result)
            return result
        finally:
            run = self._inflight.get(spec.name)
            if run is not None and run.task is asyncio.current_task():
                del self._inflight[spec.name]

    def _record(self, entry: _Entry, result: CheckResult) -> None:
        if self._entries.get(entry.spec.name) is not entry:
            return  # the check was reloaded away while this run was in flight
        spec, before = entry.spec, entry.state
        entry.state = after = evaluate(
            before, result, spec.failure_threshold, spec.success_threshold
        )
        self.version += 1
        for observer in self.observers:
            with _contained(observer):
                observer.on_result(spec, result, after)
                if after.status is not before.status:
                    observer.on_transition(spec, before, after)
        if not self.started and all(
            self._entries[n].state.ever_passed for n in self._members["startup"]
        ):
            self.started = True
        self._refresh_groups()

    def _refresh_groups(self) -> None:
        """Tell observers about group transitions (whole groups, as they stand now)."""
        for group in GROUPS:
            state = self.group_state(group, self.states(self._members[group]))
            before = self._groups.get(group)
            if before is not state:
                self._groups[group] = state
                for observer in self.observers:
                    with _contained(observer):
                        observer.on_group(group, before, state)

    # --- evaluation ----------------------------------------------------------------------------

    def states(self, names: Iterable[str]) -> list[CheckState]:
        """Current states of `names`, with freshness applied."""
        now = self.clock()
        out = []
        for name in names:
            entry = self._entries.get(name)
            if entry is not None:  # None: a reload removed it while a request waited
                out.append(freshness(entry.state, now, entry.spec.stale_after))
        return out

    def group_state(self, group: str, states: Sequence[CheckState]) -> State:
        """The state of `group` given its members' `states` (no side effects)."""
        if group == "startup":
            return State.HEALTHY if self.started else State.UNKNOWN
        return aggregate(states, self.draining and group != "liveness")

    def horizon(self, group: str) -> float | None:
        """Until when (monotonic) the group's answer holds without a new result, or None
        when a probe of it must run checks (`on_demand` members)."""
        until = math.inf
        for name in self._members.get(group, ()):
            entry = self._entries[name]
            if entry.spec.mode == "on_demand":
                return None
            last = entry.state.last
            if last is not None:
                until = min(until, last.started_at + last.duration + entry.spec.stale_after)
        return until

    async def evaluate(
        self,
        group: str,
        deadline: Deadline,
        *,
        fresh: bool = False,
        exclude: Sequence[str] = (),
        only: str | None = None,
    ) -> Snapshot:
        """The group's snapshot, running `on_demand` checks (all if `fresh`) within `deadline`."""
        started = self.clock()
        names = [only] if only is not None else self.members(group)
        names = [n for n in names if n not in exclude]
        with self.tracer.start_as_current_span(
            "healthd.evaluate",
            attributes={
                "healthd.group": group,
                "healthd.deadline_ms": round(max(0.0, deadline.at - started) * 1000, 3),
            },
        ) as span:
            run = [n for n in names if fresh or self._entries[n].spec.mode == "on_demand"]
            late: dict[str, CheckResult] = {}
            if run:
                results = await asyncio.gather(*(self._join(n, deadline) for n in run))
                for result in results:
                    entry = self._entries.get(result.name)
                    if entry is None or entry.state.last is not result:
                        late[result.name] = result
            states = self.states(names)
            states = [_with(s, late[s.name]) if s.name in late else s for s in states]
            state = self.group_state(group, states)
            span.set_attribute("healthd.state", state.value)
        return Snapshot(
            group=group,
            state=state,
            draining=self.draining,
            checks=tuple(states),
            excluded=tuple(e for e in exclude if e in self._entries),
            deadline=max(0.0, deadline.at - started),
            elapsed=self.clock() - started,
        )


@contextlib.contextmanager
def _contained(observer: Observer) -> Iterator[None]:
    """An observer's bug is logged, never turned into a failed run or a 500."""
    try:
        yield
    except Exception:  # contained by design; the traceback goes to the log
        log.exception("observer %s failed", type(observer).__name__)


def _build(spec: SpecBase) -> Check:
    spec.preload()  # here, at start-up or reload, not inside a run on the event loop
    return spec.build()


def _with(state: CheckState, result: CheckResult) -> CheckState:
    """A state showing a result this caller saw but the shared run has not (yet) recorded."""
    status = Status(result.outcome.value) if result.outcome is Outcome.TIMEOUT else state.status
    return replace(state, status=status, last=result)
