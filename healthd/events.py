"""What the store emits: the observer protocol (inline, contained) and stream events.

    Observer.on_result      every recorded run, with the check's state after it
    Observer.on_transition  a check's status changed (a run, or its result went stale)
    Observer.on_group       a group's state changed (first announcement: before is None)
    Event                   the same transitions as numbered values, for `Store.changes()`

Probe and reload counts are not events: the code where they happen calls the metrics.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal

from healthd.checks.base import SpecBase
from healthd.model import CheckResult, CheckState, State

log = logging.getLogger("healthd")
RING = 1000  # events kept for readers that resume (`changes(since=...)`), at least
PER_CHECK = 2  # and this many per configured check: one mass failure (every check, then
# every group) fits, so no reader is reset by a single burst


class Observer:
    """Reacts to what the store records. Subclasses override what they need; all run inline,
    so an observer must be quick (it runs once per check run)."""

    def on_result(self, spec: SpecBase, result: CheckResult, state: CheckState) -> None:
        """Every recorded run, with the state after it."""

    def on_transition(self, spec: SpecBase, before: CheckState, after: CheckState) -> None:
        """A check's status changed."""

    def on_group(self, group: str, before: State | None, after: State) -> None:
        """A group's state changed."""


Kind = Literal["check", "group", "reset"]


@dataclass(frozen=True, slots=True)
class Event:
    """One transition, numbered: `id` increases by one per event, across kinds.

    kind `check`: `state` and `previous` are statuses; `group`: group states;
    `reset`: the reader fell behind the ring, so it must start again from a snapshot.
    """

    id: int
    kind: Kind
    name: str
    state: str
    previous: str | None
    message: str
    at: float  # wall clock


class Ring:
    """The last `RING` events and the readers waiting for the next one.

    An emission appends and wakes every waiting reader at once (one asyncio.Event per
    emission, so its cost does not grow with the readers); a slow reader costs nothing
    but its own lag. An SSE or gRPC Watch handler is a loop over `changes()`.
    """

    def __init__(self, size: int = RING) -> None:
        self._events: deque[Event] = deque(maxlen=size)
        self.last_id = 0
        self._wakeup: asyncio.Event | None = None

    @property
    def size(self) -> int:
        """How many events the ring keeps."""
        return self._events.maxlen or RING

    def resize(self, size: int) -> None:
        """Keep the last `size` events from now on (never fewer than `RING`)."""
        size = max(RING, size)
        if size != self._events.maxlen:
            self._events = deque(self._events, maxlen=size)

    def emit(
        self, kind: Kind, name: str, state: str, previous: str | None, message: str, at: float
    ) -> None:
        self.last_id += 1
        self._events.append(Event(self.last_id, kind, name, state, previous, message, at))
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None

    async def changes(self, since: int | None = None) -> AsyncIterator[Event]:
        """Events after id `since` (None: from now on), waiting for new ones forever.

        A reader asking for an id the ring no longer holds (or never held) gets one `reset`
        event and carries on from the newest: it should send a fresh snapshot then.
        """
        cursor = self.last_id if since is None else since
        while True:
            while cursor != self.last_id:
                first = self.last_id - len(self._events) + 1  # the oldest id held
                if not first - 1 <= cursor <= self.last_id:
                    cursor = self.last_id
                    yield Event(cursor, "reset", "", "", None, "", 0.0)
                    continue
                cursor += 1
                yield self._events[cursor - first]
            if self._wakeup is None:
                self._wakeup = asyncio.Event()
            await self._wakeup.wait()


class Fanout:
    """Calls every observer; one that raises is logged and never breaks a run or an answer.

    (A plain try per call: a context manager here would cost more than most observers.)
    """

    def __init__(self, observers: Sequence[Observer] = ()) -> None:
        self.observers = list(observers)

    def result(self, spec: SpecBase, result: CheckResult, state: CheckState) -> None:
        for observer in self.observers:
            try:
                observer.on_result(spec, result, state)
            except Exception:  # noqa: BLE001 - contained by design; _failed logs the traceback
                _failed(observer)

    def transition(self, spec: SpecBase, before: CheckState, after: CheckState) -> None:
        for observer in self.observers:
            try:
                observer.on_transition(spec, before, after)
            except Exception:  # noqa: BLE001 - contained by design
                _failed(observer)

    def group(self, group: str, before: State | None, after: State) -> None:
        for observer in self.observers:
            try:
                observer.on_group(group, before, after)
            except Exception:  # noqa: BLE001 - contained by design
                _failed(observer)


def _failed(observer: Observer) -> None:
    log.exception("observer %s failed", type(observer).__name__)
