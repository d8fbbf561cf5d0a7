"""Runs: one in-flight run per check, and `evaluate(group, deadline)` on top of them.

    scheduler timer ─┐
    probe request ───┴─▶ start(name, deadline) ─▶ one task per check ─▶ runner.run ─▶ store.record

`depends_on` (dependencies.py): a run whose parent is failing records a skipped result
instead of running; a parent turning failing skips its children at once, and a parent
recovering runs its skipped children at once (`_cascade`).

ATTENTION: a run is an asyncio.Task held in `_inflight` until it has recorded its result.
Callers wait on it with `asyncio.wait(..., timeout=)`, which never cancels it: a caller
whose deadline passes stops waiting, and the run still lands for the others and the store.

A caller joins the run in flight, unless that run was cut short by its starter's smaller
budget (its deadline is before its own `timeout`) and ends more than `JOIN_SLACK` of this
caller's budget before this caller's own deadline: then it starts a run of its own with its
whole budget (sent onward too), so a 100 ms caller never turns a 2 s caller's answer into
"timeout after 100ms". At most `MAX_RUNS` runs of a check are in flight; beyond, a caller
joins the one that ends last. A cut-short run's timeout is not recorded while a longer run
of the check is in flight (that one's result is the check's); its callers still see it.

Callers that give up on the same run with the same budget share one timeout result; the
state they answer with comes from the store's tallies plus those late results (O(late)),
and the per-state answer bytes are shared by the views.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import Tracer

from healthd import dependencies, runner, spans
from healthd.checks.base import Check, SpecBase
from healthd.deadline import Clock, Deadline
from healthd.durations import human_duration
from healthd.model import CheckResult, CheckState, Outcome, Reason, Snapshot, State, Status
from healthd.store import Store

JOIN_SLACK = 0.1  # of a joining caller's budget: how much earlier a cut-short run may end
MAX_RUNS = 2  # runs of one check in flight at most (coalescing: never one per caller)


@dataclass(slots=True)
class _Run:
    spec: SpecBase
    task: asyncio.Task[CheckResult]
    started: float
    at: float  # its deadline: min(spec.timeout from `started`, its starter's budget)
    timeouts: dict[int, CheckResult] = field(default_factory=dict)  # by budget in µs

    @property
    def cut_short(self) -> bool:
        """Its starter's budget ended it before the check's own timeout would have."""
        return self.at < self.started + self.spec.timeout


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One caller's answer: the state, and what its detailed view needs to be built."""

    group: str
    state: State
    deadline: float  # the budget it had, seconds
    elapsed: float
    exclude: tuple[str, ...] = ()
    only: str | None = None
    late: dict[str, CheckResult] = field(default_factory=dict)

    def snapshot(self, store: Store) -> Snapshot:
        """The snapshot behind the answer (the shared one, unless this caller's differs)."""
        return store.snapshot(
            self.group, self.exclude, self.only, self.late,
            state=self.state, deadline=self.deadline, elapsed=self.elapsed,
        )  # fmt: skip


class Runs:
    """Starts, shares and records runs of the store's checks."""

    def __init__(
        self,
        store: Store,
        *,
        tracer: Tracer | None = None,
        clock: Clock = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.tracer = tracer  # None: no tracing configured, so no spans at all (not even no-op)
        self.clock, self.wall = clock, wall
        self.checks: dict[str, Check] = {}
        self._inflight: dict[str, list[_Run]] = {}  # by check: at most MAX_RUNS each
        self._tasks: set[asyncio.Task[CheckResult]] = set()  # every run, orphans of reloads too
        self.dependents: Mapping[str, tuple[str, ...]] = {}  # parent → children (depends_on)
        self.waking = False  # a recovered parent starts its skipped children's runs

    def start(
        self, name: str, deadline: Deadline, background: bool = False
    ) -> asyncio.Task[CheckResult]:
        """The run of `name` in flight that serves `deadline`, or a new one within it."""
        spec = self.store.spec(name)
        assert spec is not None, name
        now = self.clock()
        at = now + spec.timeout if background else min(deadline.at, now + spec.timeout)
        runs = [r for r in self._inflight.get(name, ()) if r.spec is spec]  # not reloaded away
        if runs:
            last = max(runs, key=lambda r: r.at)
            if (
                not last.cut_short
                or last.at >= at - JOIN_SLACK * (at - now)
                or len(runs) >= MAX_RUNS
            ):
                return last.task
        task = asyncio.get_running_loop().create_task(
            self._execute(spec, self.checks[name], deadline, background), name=f"run:{name}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._inflight.setdefault(name, []).append(_Run(spec, task, now, at))
        return task

    async def join(self, name: str, deadline: Deadline) -> CheckResult:
        """`name`'s result within `deadline`: the shared run's, or a timeout for this caller."""
        task = self.start(name, deadline)
        await asyncio.wait([task], timeout=max(0.0, deadline.at - self.clock()))
        return task.result() if task.done() else self._gave_up(name, task, deadline)

    def inflight(self) -> dict[str, float]:
        """Checks running now, with the age of each run in seconds."""
        now = self.clock()
        return {n: now - min(r.started for r in runs) for n, runs in self._inflight.items()}

    async def stop(self) -> None:
        """Cancel the runs in flight and wait for them."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def evaluate(
        self,
        group: str,
        deadline: Deadline,
        *,
        fresh: bool = False,
        exclude: Sequence[str] = (),
        only: str | None = None,
    ) -> Evaluation:
        """The group's state, running its `on_demand` checks (all if `fresh`) within `deadline`."""
        store = self.store
        started = self.clock()
        if only is None:
            names = store.members(group) if fresh else store.on_demand(group)
        else:
            spec = store.spec(only)
            names = (only,) if spec is not None and (fresh or spec.mode == "on_demand") else ()
        if self.tracer is None:
            state, late = await self._wait(group, deadline, names, exclude, only)
        else:
            with spans.evaluation(self.tracer, group, max(0.0, deadline.at - started)) as span:
                state, late = await self._wait(group, deadline, names, exclude, only)
                spans.evaluated(span, state)
        return Evaluation(
            group, state, max(0.0, deadline.at - started), self.clock() - started,
            tuple(exclude), only, late,
        )  # fmt: skip

    # --- internals --------------------------------------------------------------------------------

    async def _wait(
        self,
        group: str,
        deadline: Deadline,
        names: Sequence[str],
        exclude: Sequence[str],
        only: str | None,
    ) -> tuple[State, dict[str, CheckResult]]:
        """Run `names` (sharing runs in flight) until done or `deadline`; the group's state
        counting what this caller saw, and the results the store does not hold (late)."""
        late: dict[str, CheckResult] = {}
        tasks = {self.start(n, deadline): n for n in names if n not in exclude}
        if tasks:
            await asyncio.wait(tasks, timeout=max(0.0, deadline.at - self.clock()))
            for task, name in tasks.items():
                if not task.done():
                    late[name] = self._gave_up(name, task, deadline)
                elif not task.cancelled() and _unrecorded(self.store, name, task.result()):
                    late[name] = task.result()
        return self.store.state_of(group, exclude, only, late), late

    def _gave_up(
        self, name: str, task: asyncio.Task[CheckResult], deadline: Deadline
    ) -> CheckResult:
        """The timeout this caller reports for a run that outlives its budget; callers with
        the same budget share one result."""
        run = self._run(name, task)
        if run is None:  # finished just now
            return task.result()
        limit = deadline.child(run.spec.timeout, now=run.started)
        budget = max(0.0, limit.at - run.started)
        key = round(budget * 1e6)
        result = run.timeouts.get(key)
        if result is None:
            spec = run.spec
            result = run.timeouts[key] = CheckResult(
                name, spec.kind, Outcome.TIMEOUT, Reason.TIMEOUT,
                f"timeout after {human_duration(budget)}",
                self.clock() - run.started, run.started, self.wall(), budget,
            )  # fmt: skip
        return result

    def _record(self, spec: SpecBase, result: CheckResult) -> None:
        before = self.store.check(spec.name)
        after = self.store.record(spec, result)
        if (
            after is not None
            and before is not None
            and before.status.failing is not after.status.failing
        ):
            self._cascade(spec.name, after)

    def _skip(self, spec: SpecBase, parent: CheckState) -> CheckResult:
        result = dependencies.skipped(
            spec.name, spec.kind, parent, self.clock(), self.wall(), spec.timeout
        )
        self._record(spec, result)
        return result

    def _cascade(self, name: str, parent: CheckState) -> None:
        """`name` turned failing: skip its children now; recovered: run its skipped children
        now rather than after their interval (`waking`: while the scheduler runs)."""
        for child in self.dependents.get(name, ()):
            spec, state = self.store.spec(child), self.store.check(child)
            if spec is None or state is None or child in self._inflight:
                continue  # reloaded away, or running: that run checks its parents itself
            if parent.status.failing:
                if state.status is not Status.SKIPPED:
                    self._skip(spec, parent)
            elif state.status is Status.SKIPPED and self.waking:
                self.start(child, Deadline.after(spec.timeout, self.clock), True)

    async def _execute(
        self, spec: SpecBase, check: Check, deadline: Deadline, background: bool
    ) -> CheckResult:
        if background:
            # check.timeout from when the run starts: a loop that lagged between scheduling
            # and here must not eat the budget (a loop check would time out "after 0ms").
            deadline = Deadline.after(spec.timeout, self.clock)
        try:
            parent = dependencies.blocking(spec.depends_on, self.store.check)
            if parent is not None:
                return self._skip(spec, parent)  # no load on a path known to be down
            if self.tracer is None:
                result = await runner.run(spec, check, deadline, wall=self.wall)
            else:
                result = await self._traced(spec, check, deadline, background, self.tracer)
            if not self._superseded(spec.name, result):
                self._record(spec, result)
            return result
        finally:
            runs = self._inflight.get(spec.name, [])
            runs[:] = [r for r in runs if r.task is not asyncio.current_task()]
            if not runs:
                self._inflight.pop(spec.name, None)

    def _run(self, name: str, task: asyncio.Task[Any] | None) -> _Run | None:
        return next((r for r in self._inflight.get(name, ()) if r.task is task), None)

    def _superseded(self, name: str, result: CheckResult) -> bool:
        """A cut-short run's timeout while a longer run of the check is in flight: that
        run's result is the check's, so this one is not recorded (its callers see it)."""
        if result.outcome is not Outcome.TIMEOUT:
            return False
        run = self._run(name, asyncio.current_task())
        return (
            run is not None
            and run.cut_short
            and any(r.at > run.at and r.spec is run.spec for r in self._inflight[name])
        )

    async def _traced(
        self, spec: SpecBase, check: Check, deadline: Deadline, background: bool, tracer: Tracer
    ) -> CheckResult:
        """`runner.run` inside a `healthd.check` span (opened outside the run's timeout)."""
        with spans.check_run(tracer, spec.name, spec.kind, background) as span:
            result = await runner.run(spec, check, deadline, wall=self.wall)
            spans.ran(span, result)
        return result


def _unrecorded(store: Store, name: str, result: CheckResult) -> bool:
    """A result the store did not take (its check was reloaded away meanwhile)."""
    state = store.check(name)
    return state is not None and state.last is not result
