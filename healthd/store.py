"""The store: the one read model (reference §1, §11). Everything that shows state reads it.

    record(spec, result) ─▶ evaluator ─▶ the check's state ─▶ its groups' tallies ─▶ states
                         ─▶ generation += 1 ─▶ observers, and events for `changes()`

It owns every check's state, a tally per group (how many members weigh on it as failing,
unknown or degraded: aggregator.weigh), the drain flag, the startup latch (how many
critical startup members never passed), the generation number, posted heartbeats, and
a ring of transition events, and each check's last `history` results (a bounded deque per
check: O(1) per record) with the wall time of its last status change. Recording a result
touches only that check's groups' tallies: O(1) in the number of checks. A result going
stale (`max_age`) turns its check `unknown` through a heap of expiry times, applied when
the store is next read or written.

A group's snapshot is built at most once per generation and shared by every reader.

Fleet (reference §14, healthd/fleet/): while the fleet is connected, a `shared` check's new
failure keeps the weight it had before (`lenient`: settling) until the fleet rule decides;
an `excuse` makes a failing check weigh as non-critical (the panic rule) with a reason the
snapshot carries. Without a fleet both maps are empty and nothing here changes.

ATTENTION: over the ~300 lines we aim for, on purpose. One invariant holds it together:
each check's `code` is counted exactly once in the tally of each of its groups, and
`configure`, `record`, `_expire_due`, `_move`, `excuse` and `state_of` all rely on it
(tests/test_store.py checks it against a full walk for random sequences). Split, that
invariant would have no single home.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from healthd.aggregator import DEGRADED, FAILING, fold, weigh
from healthd.checks.base import SpecBase
from healthd.evaluator import evaluate, initial
from healthd.events import PER_CHECK, Event, Fanout, Kind, Observer, Ring
from healthd.groups import GROUPS, PROBED, STARTUP, Membership, drains
from healthd.model import (
    Beat,
    CheckResult,
    CheckState,
    Outcome,
    PastRun,
    Reason,
    Snapshot,
    State,
    Status,
)

HISTORY = 100  # results kept per check unless settings say otherwise (`history:`)

# ATTENTION: a result as the history keeps it is a plain tuple of strings and floats
# (outcome and reason by value), which the garbage collector untracks once it survives a
# collection (it never untracks a named tuple, nor a tuple holding an enum). At 5,000
# checks the store keeps 500,000 of them: tracked, each full collection walked them all
# (~20 ms every ~2 s, with probes waiting behind it). `history()` hands out PastRuns.
Kept = tuple[str, str, str, float, float]  # outcome, reason, message, duration, observed_at
_OUTCOMES = {o.value: o for o in Outcome}
_REASONS = {r.value: r for r in Reason}


def _kept(result: CheckResult, previous: Kept | None) -> Kept:
    """`result` as the history keeps it, sharing the previous entry's message if the same."""
    message = result.message
    if previous is not None and previous[2] == message:
        message = previous[2]
    return (result.outcome.value, result.reason.value, message, result.duration, result.observed_at)


@dataclass(slots=True, eq=False)  # `tally in slot.tallies` asks which group: identity
class _Tally:
    """How many of a group's members weigh on it each way (indexed by aggregator codes)."""

    drains: bool
    counts: list[int]


@dataclass(slots=True)
class _Slot:
    spec: SpecBase
    state: CheckState  # counted: what the thresholds saw
    view: CheckState  # what readers see: `state`, or `unknown` once its result is stale
    code: int  # how it weighs on its groups now (aggregator.weigh of view.status)
    tallies: tuple[_Tally, ...]
    expires: float  # monotonic time its last result goes stale; inf before one
    startup: bool  # a member of the startup latch
    history: deque[Kept]  # the last `history` results, oldest first (`_kept`)
    since: float = 0.0  # wall time of the last status change (0: none yet)


class Store:
    """One per daemon. Not thread-safe: everything runs on the event loop's thread."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        observers: Sequence[Observer] = (),
        history: int = HISTORY,
    ) -> None:
        self.clock, self.wall = clock, wall
        self.history_size = history  # results kept per check (settings.history)
        self.fanout = Fanout(observers)
        self.generation = 0  # +1 on every change a reader could see
        self.draining = False
        self.started = False  # the startup latch: closed for good once every member passed
        self.states: dict[str, State] = dict.fromkeys(GROUPS, State.UNKNOWN)
        self.next_expiry = math.inf  # the earliest time a result may go stale
        self._announced: dict[str, State | None] = dict.fromkeys(GROUPS)
        self._tallies = {g: _Tally(drains(g), [0, 0, 0, 0]) for g in GROUPS}
        self._slots: dict[str, _Slot] = {}
        self._members: Mapping[str, tuple[str, ...]] = {g: () for g in GROUPS}
        self._on_demand: dict[str, tuple[str, ...]] = {g: () for g in GROUPS}
        self._shared: tuple[str, ...] = ()  # critical `shared` checks (the fleet's facts)
        self._unstarted = 0
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._snapshots: dict[str, Snapshot] = {}
        self._beats: dict[str, Beat] = {}
        self._lenient: Mapping[str, str] = {}  # shared check → reason while it settles
        self._excuses: dict[str, tuple[int, str]] = {}  # failing check → (its weight, why)
        self.ring = Ring()

    # --- configuration (start-up and reloads: O(N), the only walks) ---------------------------

    def configure(
        self, specs: Iterable[SpecBase], membership: Membership, history: int | None = None
    ) -> set[str]:
        """Take a new set of checks; those whose spec did not change keep their state and
        history (`history`: a new number of results to keep). Returns the names kept."""
        old, self._slots, kept = self._slots, {}, set()
        if history is not None:
            self.history_size = history
        startup = set(membership.members[STARTUP])
        for tally in self._tallies.values():
            tally.counts[:] = [0, 0, 0, 0]
        for spec in specs:
            slot = old.get(spec.name)
            if slot is not None and slot.spec == spec:
                kept.add(spec.name)
                if slot.history.maxlen != self.history_size:
                    slot.history = deque(slot.history, maxlen=self.history_size)
            else:
                state = initial(spec)
                code = weigh(spec.critical, state.status)
                ring: deque[Kept] = deque(maxlen=self.history_size)
                slot = _Slot(spec, state, state, code, (), math.inf, False, ring)
            held = self._excuses.get(spec.name) if spec.name in kept else None
            if held is None:  # a new or changed check starts over; the fleet re-decides
                self._excuses.pop(spec.name, None)
            slot.code = held[0] if held is not None else weigh(spec.critical, slot.view.status)
            groups = membership.groups_of[spec.name]
            slot.tallies = tuple(self._tallies[g] for g in groups)
            slot.startup = spec.name in startup
            for tally in slot.tallies:
                tally.counts[slot.code] += 1
            self._slots[spec.name] = slot
        self._members = membership.members
        self.ring.resize(PER_CHECK * len(self._slots))  # a burst of every check fits
        self._excuses = {n: e for n, e in self._excuses.items() if n in self._slots}
        self._on_demand = {
            g: tuple(n for n in names if self._slots[n].spec.mode == "on_demand")
            for g, names in self._members.items()
        }
        self._shared = tuple(n for n, s in self._slots.items() if s.spec.shared and s.spec.critical)
        self._beats = {n: b for n, b in self._beats.items() if n in self._slots}
        if not self.started:
            self._unstarted = sum(not self._slots[n].state.ever_passed for n in startup)
            self.started = self._unstarted == 0
        self.generation += 1
        self._settle(announce=False)  # the first announcements come with the first change
        return kept

    def spec(self, name: str) -> SpecBase | None:
        slot = self._slots.get(name)
        return slot.spec if slot is not None else None

    def specs(self) -> list[SpecBase]:
        return [slot.spec for slot in self._slots.values()]

    def members(self, group: str) -> tuple[str, ...]:
        return self._members.get(group, ())

    def on_demand(self, group: str) -> tuple[str, ...]:
        """The group's `on_demand` members: a probe of it runs them (so it has no cached answer)."""
        return self._on_demand.get(group, ())

    def shared(self) -> tuple[str, ...]:
        """The critical `shared` checks (reference §14): found once per configure."""
        return self._shared

    def groups_of(self, name: str) -> list[str]:
        """The probed groups `name` is in (O(1) in the number of checks)."""
        return [g for g in PROBED if self.has(g, name)]

    def has(self, group: str, name: str) -> bool:
        """Whether check `name` is a member of `group`."""
        slot = self._slots.get(name)
        if slot is None:
            return False
        return slot.startup if group == STARTUP else self._tallies[group] in slot.tallies

    # --- writes ---------------------------------------------------------------------------------

    def record(self, spec: SpecBase, result: CheckResult) -> CheckState | None:
        """Fold `result` into its check's state: O(1) in the number of checks (amortised).
        None when the check was reloaded away (or changed) while the run was in flight."""
        slot = self._slots.get(result.name)
        if slot is None or slot.spec is not spec:
            return None
        self._expire_due()
        before = slot.view
        after = evaluate(slot.state, result, spec.failure_threshold, spec.success_threshold)
        slot.state = slot.view = after
        kept = slot.history
        if kept.maxlen:
            kept.append(_kept(result, kept[-1] if kept else None))
        slot.expires = result.started_at + result.duration + spec.stale_after
        heapq.heappush(self._heap, (slot.expires, next(self._seq), spec.name))
        self.next_expiry = self._heap[0][0]
        self.generation += 1
        self.fanout.result(spec, result, after)
        if slot.startup and not before.ever_passed and after.ever_passed:
            self._unstarted -= 1
            self.started = self.started or self._unstarted == 0
        if after.status is not before.status:
            self._move(slot, before, after)
        elif after.flapping is not before.flapping:  # held at fail already: no re-weighing
            self.fanout.transition(spec, before, after)
        self._settle()
        return after

    def set_draining(self, draining: bool) -> None:
        if draining is not self.draining:
            self.draining = draining
            self._changed()

    def set_lenient(self, lenient: Mapping[str, str]) -> None:
        """The shared checks whose new failures settle (fleet connected), with the reason
        shown meanwhile. Empty: local semantics, every excuse withdrawn at once."""
        self._lenient = dict(lenient)
        for name in [n for n in self._excuses if n not in self._lenient]:
            self.excuse(name, None)

    def excuse(self, name: str, reason: str | None, *, panic: bool = False) -> None:
        """Fleet rule for a failing check: `panic` weighs it as non-critical; a reason alone
        keeps its current weight (settling); None counts it as it is. O(1)."""
        slot = self._slots.get(name)
        if slot is None:
            return
        held = self._excuses.get(name)
        if reason is None:
            if held is None:
                return
            del self._excuses[name]
            self._reweigh(slot, weigh(slot.spec.critical, slot.view.status))
        else:
            if not slot.view.status.failing:
                return  # it passed meanwhile: nothing to excuse
            code = DEGRADED if panic else (held[0] if held is not None else slot.code)
            if held == (code, reason):
                return
            self._excuses[name] = (code, reason)
            self._reweigh(slot, code)
        self.generation += 1
        self._settle()

    @property
    def lenient(self) -> Mapping[str, str]:
        return self._lenient

    def held(self, group: str) -> dict[str, str]:
        """The group's checks under a fleet rule now, with why: O(checks held)."""
        if not self._excuses:
            return {}
        return {n: why for n, (_, why) in self._excuses.items() if self.has(group, n)}

    def post_beat(self, name: str, beat: Beat) -> None:
        """Keep the application's latest heartbeat for check `name` (a heartbeat run reads it)."""
        self._beats[name] = beat

    def beat(self, name: str) -> Beat | None:
        return self._beats.get(name)

    # --- reads ------------------------------------------------------------------------------------

    def current(self, group: str) -> State:
        """The group's state now: O(1) (the probe hot path)."""
        if self.clock() > self.next_expiry:
            self._expire_due()
        return self.states[group]

    def group_states(self) -> dict[str, State]:
        """Every probed group's state now (what /health lists)."""
        self._expire_due()
        return {g: self.states[g] for g in PROBED}

    def check(self, name: str) -> CheckState | None:
        """One check's state as readers see it (freshness applied)."""
        self._expire_due()
        slot = self._slots.get(name)
        return slot.view if slot is not None else None

    def history(self, name: str, last: int | None = None) -> list[PastRun]:
        """The check's last `last` results (all kept when None), oldest first."""
        slot = self._slots.get(name)
        if slot is None or last == 0:
            return []
        kept = slot.history
        start = 0 if last is None or last >= len(kept) else len(kept) - last
        return [
            PastRun(_OUTCOMES[o], _REASONS[r], message, duration, at)
            for o, r, message, duration, at in itertools.islice(kept, start, None)
        ]

    def since(self, name: str) -> float | None:
        """Wall time of the check's last status change (None: none yet, or no such check)."""
        slot = self._slots.get(name)
        return slot.since or None if slot is not None else None

    def snapshot(
        self,
        group: str,
        exclude: Sequence[str] = (),
        only: str | None = None,
        late: Mapping[str, CheckResult] | None = None,
        *,
        state: State | None = None,
        deadline: float | None = None,
        elapsed: float = 0.0,
    ) -> Snapshot:
        """The one snapshot builder: the group as of now, built once per generation and
        shared by every reader; a caller's own (its `state`, `deadline` and `elapsed`, what
        it excluded, picked or saw `late`) reuses the shared checks when it can."""
        self._expire_due()
        cached = self._snapshots.get(group)
        if cached is None or cached.generation != self.generation:
            slots = self._slots
            cached = self._snapshots[group] = Snapshot(
                group=group,
                state=self.states[group],
                draining=self.draining,
                checks=tuple(slots[n].view for n in self._members[group]),
                groups=self.group_states(),
                generation=self.generation,
                fleet=self.held(group),
            )
        own = bool(exclude) or only is not None or bool(late)
        if not own and state in (None, cached.state) and deadline is None and not elapsed:
            return cached
        return replace(
            cached,
            state=cached.state if state is None else state,
            deadline=deadline,
            elapsed=elapsed,
            checks=self.view(group, exclude, only, late) if own else cached.checks,
            excluded=tuple(e for e in exclude if e in self._slots),
            fleet={n: why for n, why in cached.fleet.items()
                   if n not in exclude and only in (None, n)} if own else cached.fleet,
        )  # fmt: skip

    def state_of(
        self,
        group: str,
        exclude: Sequence[str] = (),
        only: str | None = None,
        late: Mapping[str, CheckResult] | None = None,
    ) -> State:
        """The group's state without `exclude`d members (or of `only` one), counting `late`
        results one caller saw but the store has not: O(len(exclude) + len(late))."""
        self._expire_due()
        if group == STARTUP:
            return self.states[STARTUP]  # a latch: exclusions and late runs do not move it
        tally, late = self._tallies[group], late or {}
        draining = self.draining and tally.drains
        if only is not None:
            counts, slot = [0, 0, 0, 0], self._slots.get(only)
            if slot is not None and only not in exclude:
                counts[self._weight(slot, _seen(slot, late).status)] = 1
            return fold(counts, draining)
        if not exclude and not late:
            return self.states[group]
        counts = list(tally.counts)
        for name in {*exclude, *late}:
            slot = self._slots.get(name)
            if slot is None or tally not in slot.tallies:
                continue  # not a member (or reloaded away meanwhile)
            counts[slot.code] -= 1
            if name not in exclude:
                counts[self._weight(slot, _seen(slot, late).status)] += 1
        return fold(counts, draining)

    def view(
        self,
        group: str,
        exclude: Sequence[str] = (),
        only: str | None = None,
        late: Mapping[str, CheckResult] | None = None,
    ) -> tuple[CheckState, ...]:
        """The checks one caller sees: the shared snapshot's unless it excludes, picks or
        saw late results (then O(members), for that caller's detailed answer only)."""
        if only is None and not exclude and not late:
            return self.snapshot(group).checks
        self._expire_due()
        late = late or {}
        names = [only] if only is not None else self._members[group]
        out = []
        for name in names:
            slot = self._slots.get(name)
            if slot is not None and name not in exclude:
                out.append(_seen(slot, late))
        return tuple(out)

    # --- subscriptions ----------------------------------------------------------------------------

    def changes(self, since: int | None = None) -> AsyncIterator[Event]:
        """Transition events after id `since` (None: from now on), as they happen (Ring)."""
        return self.ring.changes(since)

    # --- internals --------------------------------------------------------------------------------

    def _expire_due(self) -> None:
        """Turn checks whose last result is older than their `max_age` unknown."""
        now = self.clock()
        heap, moved = self._heap, False
        while heap and heap[0][0] < now:
            at, _, name = heapq.heappop(heap)
            slot = self._slots.get(name)
            if slot is None or slot.expires != at or slot.view.status is Status.UNKNOWN:
                continue  # superseded by a newer result, or reloaded away
            before = slot.view
            slot.view = replace(slot.state, status=Status.UNKNOWN)
            self._move(slot, before, slot.view)
            moved = True
        self.next_expiry = heap[0][0] if heap else math.inf
        if moved:
            self.generation += 1
            self._settle()

    def _move(self, slot: _Slot, before: CheckState, after: CheckState) -> None:
        """A check's status changed: re-weigh it in its groups, tell observers and streams."""
        code, name = weigh(slot.spec.critical, after.status), slot.spec.name
        if code == FAILING and (name in self._excuses or name in self._lenient):
            if name not in self._excuses and not before.status.failing:
                self._excuses[name] = (slot.code, self._lenient[name])  # settle first
            if name in self._excuses:
                code = self._excuses[name][0]
        elif name in self._excuses and not after.status.failing:
            del self._excuses[name]
        self._reweigh(slot, code)
        slot.since = self.wall()
        self.fanout.transition(slot.spec, before, after)
        message = after.last.message if after.last is not None else ""
        self._emit("check", after.name, after.status.value, before.status.value, message)

    def _reweigh(self, slot: _Slot, code: int) -> None:
        if code != slot.code:
            for tally in slot.tallies:
                tally.counts[slot.code] -= 1
                tally.counts[code] += 1
            slot.code = code

    def _weight(self, slot: _Slot, status: Status) -> int:
        """How a check with `status` would weigh now (a caller's late result): excuses apply."""
        held = self._excuses.get(slot.spec.name)
        return held[0] if held is not None and status.failing else weigh(slot.spec.critical, status)

    def _changed(self) -> None:
        self.generation += 1
        self._settle()

    def _settle(self, announce: bool = True) -> None:
        """Recompute each group's state from its tally (O(groups)); announce the changes."""
        states, draining = self.states, self.draining
        for group, tally in self._tallies.items():
            if group == STARTUP:  # a latch; until it closes, unhealthy while a member fails
                states[group] = State.HEALTHY if self.started else _pending(tally.counts)
            else:
                states[group] = fold(tally.counts, draining and tally.drains)
        for group in GROUPS if announce else ():
            before, after = self._announced[group], states[group]
            if before is not after:
                self._announced[group] = after
                self.fanout.group(group, before, after)
                self._emit("group", group, after.value, before.value if before else None, "")

    def _emit(self, kind: Kind, name: str, state: str, previous: str | None, message: str) -> None:
        self.ring.emit(kind, name, state, previous, message, self.wall())


def _pending(counts: list[int]) -> State:
    """The startup group before its latch closed: unhealthy while a critical member fails
    (as the state table says), else unknown (waiting for a first pass)."""
    return State.UNHEALTHY if fold(counts, False) is State.UNHEALTHY else State.UNKNOWN


def _seen(slot: _Slot, late: Mapping[str, CheckResult]) -> CheckState:
    result = late.get(slot.spec.name)
    return slot.view if result is None else late_view(slot.view, result)


def late_view(state: CheckState, result: CheckResult) -> CheckState:
    """A state showing a result one caller saw but the store has not (yet) recorded."""
    status = Status.TIMEOUT if result.outcome is Outcome.TIMEOUT else state.status
    return replace(state, status=status, last=result)
