"""`GET /watch`: the store's transitions as Server-Sent Events (reference §12).

    retry: 2000
    : keepalive 15                ← seconds between keep-alives (`server.watch_keepalive`)
    id: 1764662400000017          ← `base` + the store's Ring id: increasing, and never
    event: snapshot                 reused by a restarted daemon or another instance
    data: {"groups": {...}, "draining": false, "checks": {...}}

    id: 1764662400000018
    event: check
    data: {"name": "db", "status": "fail", "previous": "pass", "message": "...", "at": "..."}

Then `group` and `check` events as they happen, `: keep-alive` after `keepalive` seconds
without one (a client may take twice that silence for a lost stream: healthd.client),
and at the end one of: `draining` (the listeners are closing: `Watchers.closed`), or
`dropped` (this reader fell behind the ring, or its writes stalled for `stall` seconds).

- `Last-Event-ID` resumes after that event while the ring (1,000 events, or two per check
  if that is more) still holds it;
  otherwise (too old, another run's id) the stream starts with a fresh `snapshot`.
- `?group=` and `?check=` (repeatable) filter: `group` picks those groups' events and
  the events of their member checks; `check` picks those checks' events (and no group
  events unless `group` is given too).
- Check names and messages only where the probe bodies would show them (`Answers.details`):
  without authority the stream carries group states alone.
- At most `server.max_watchers` streams (SSE and gRPC together, `Watchers`); beyond, 503.

ATTENTION: a stream is never in `InFlight` (it would hold `grace`): it ends when the
listeners close, and it is the only writer of its response (one task, one `anext` pending).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from aiohttp import web

from healthd.events import Event
from healthd.groups import GROUPS
from healthd.store import Store
from healthd.watchers import Watchers
from healthd.web import render
from healthd.web.base import NO_STORE, error

KEEPALIVE = 15.0  # seconds between comment lines, so proxies keep an idle stream open
STALL = 10.0  # seconds a write may wait on a reader before it is dropped
TICK = 1.0  # seconds between looks at the connection (a reader that went away frees its slot)
RETRY_MS = 2000  # what EventSource waits before reconnecting
BATCH = 256  # events at most in one write
HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
}


class Dropped(Exception):
    """The reader cannot keep up: its stream ends with a `dropped` event (and, when its
    writes stalled, the connection is aborted: what it has not read is discarded)."""

    def __init__(self, message: str, stalled: bool) -> None:
        super().__init__(message)
        self.stalled = stalled


class Filter:
    """What one stream shows: which groups and checks, and whether check details at all."""

    __slots__ = ("checks", "details", "groups")

    def __init__(self, groups: Sequence[str], checks: Sequence[str], details: bool) -> None:
        self.groups = tuple(dict.fromkeys(groups))
        self.checks = tuple(dict.fromkeys(checks))
        self.details = details

    def wants(self, event: Event, store: Store) -> bool:
        if event.kind == "group":
            return event.name in self.groups if self.groups else not self.checks
        if not self.details:
            return False
        if self.checks:
            return event.name in self.checks
        return not self.groups or any(store.has(g, event.name) for g in self.groups)

    def group_names(self) -> tuple[str, ...]:
        if self.groups:
            return self.groups
        return () if self.checks else GROUPS

    def check_names(self, store: Store) -> list[str]:
        if not self.details:
            return []
        if self.checks:
            return [n for n in self.checks if store.spec(n) is not None]
        names = [s.name for s in store.specs()]
        if not self.groups:
            return names
        return [n for n in names if any(store.has(g, n) for g in self.groups)]


class Watch:
    """The `/watch` handler of one probe app: one per daemon, sharing its `Watchers`."""

    def __init__(
        self,
        store: Store,
        watchers: Watchers,
        details: Callable[[web.Request], bool],
        wall: Callable[[], float] = time.time,
        keepalive: float = KEEPALIVE,
    ) -> None:
        self.store, self.watchers, self.details = store, watchers, details
        # Ids are `base` + the Ring's: they increase, and an id from an earlier run or from
        # another instance (started at another microsecond) is never taken for one of ours.
        self.base = int(wall() * 1_000_000)
        self.keepalive, self.stall, self.tick = keepalive, STALL, TICK

    async def handle(self, request: web.Request) -> web.StreamResponse:
        query, store = request.query, self.store
        groups, checks = query.getall("group", []), query.getall("check", [])
        for group in groups:
            if group not in GROUPS:
                return error(400, f"?group: {group!r:.40} is not one of {', '.join(GROUPS)}")
        details = self.details(request)
        if checks and not details:
            return error(
                403, "?check: check details are not shown to this caller (server.show_details)"
            )
        for name in checks:
            if store.spec(name) is None:
                return error(400, f"?check: no check named {name!r:.40}")
        since = self._since(request.headers.get("Last-Event-ID"))
        if isinstance(since, web.Response):
            return since
        if request.method == "HEAD":  # the headers a stream would have, and no stream
            return web.Response(headers={**HEADERS, **NO_STORE})
        if self.watchers.closed.is_set():
            return error(503, "shutting down: reconnect to another instance")
        if not self.watchers.enter("sse"):
            limit = self.watchers.limit
            response = error(503, f"too many open streams (server.max_watchers: {limit})")
            response.headers["Retry-After"] = "5"
            return response
        try:
            return await self._stream(request, Filter(groups, checks, details), since)
        finally:
            self.watchers.leave("sse")

    def _since(self, header: str | None) -> int | web.Response | None:
        """The Ring id to resume after (None: start with a snapshot); a 400 when unreadable."""
        if header is None or header.strip() == "":
            return None
        raw = header.strip()
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 19:
            return error(400, f"Last-Event-ID: {raw!r:.40} is not an event id")
        since = int(raw) - self.base
        return since if since >= 0 else None

    async def _stream(
        self, request: web.Request, wanted: Filter, since: int | None
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={**HEADERS, **NO_STORE})
        response.force_close()  # the connection ends with the stream
        await response.prepare(request)
        ring = self.store.ring
        source = self.store.changes(since)
        closed = asyncio.ensure_future(self.watchers.closed.wait())
        pending: asyncio.Future[Event] | None = None
        try:
            head = f"retry: {RETRY_MS}\n: keepalive {self.keepalive:g}\n\n".encode()
            if since is None:
                head += self._snapshot(wanted)
            await self._write(response, head)
            streaming = False  # a reset before the first event: the id is not held, a snapshot
            quiet_since = time.monotonic()
            pending = asyncio.ensure_future(anext(source))
            while True:
                done, _ = await asyncio.wait(
                    {pending, closed},
                    timeout=min(self.tick, self.keepalive),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if closed in done:
                    await self._final(
                        response,
                        "draining",
                        "healthd is shutting down: reconnect to another instance",
                    )
                    break
                if pending in done:
                    event = pending.result()
                    chunks = [self._event(event, wanted, streaming)]
                    streaming = True
                    # What the ring holds already is taken in one go (one write, not one
                    # task and one wait per event): `anext` returns at once while it holds more.
                    while ring.last_id > event.id and len(chunks) < BATCH:
                        event = await anext(source)
                        chunks.append(self._event(event, wanted, streaming))
                    pending = asyncio.ensure_future(anext(source))
                    chunk = b"".join(chunks)
                    if chunk:
                        await self._write(response, chunk)
                        quiet_since = time.monotonic()
                    continue
                transport = request.transport
                if transport is None or transport.is_closing():
                    break  # the reader went away: give its slot back now
                if time.monotonic() - quiet_since >= self.keepalive:
                    await self._write(response, b": keep-alive\n\n")
                    quiet_since = time.monotonic()
        except Dropped as exc:
            await self._final(response, "dropped", str(exc))
            if exc.stalled:
                _abort(request)
        except ConnectionError:
            pass  # the reader went away mid-write
        finally:
            closed.cancel()
            if pending is not None:
                pending.cancel()
                await asyncio.wait([pending])  # the generator is running in it: let it stop
            await _aclose(source)
        return response

    def _event(self, event: Event, wanted: Filter, streaming: bool) -> bytes:
        if event.kind == "reset":
            if streaming:
                raise Dropped(
                    f"this reader fell behind by more than the {self.store.ring.size:,}"
                    " events kept; "
                    "reconnect (with Last-Event-ID) for a fresh snapshot",
                    stalled=False,
                )
            return self._snapshot(wanted, event.id)  # resumed from an id no longer held
        if not wanted.wants(event, self.store):
            return b""
        key = "state" if event.kind == "group" else "status"
        data = {"name": event.name, key: event.state, "previous": event.previous}
        data |= {"message": event.message, "at": render.iso(event.at)}
        return _frame(event.kind, data, self.base + event.id)

    def _snapshot(self, wanted: Filter, ring_id: int | None = None) -> bytes:
        store = self.store
        ring_id = store.ring.last_id if ring_id is None else ring_id
        data: dict[str, Any] = {
            "groups": {g: store.current(g).value for g in wanted.group_names()},
            "draining": store.draining,
        }
        if wanted.details:
            checks = {}
            for name in wanted.check_names(self.store):
                state = store.check(name)
                if state is not None:
                    checks[name] = render.check_view(state)
            data["checks"] = checks
        return _frame("snapshot", data, self.base + ring_id)

    async def _write(self, response: web.StreamResponse, chunk: bytes) -> None:
        try:
            async with asyncio.timeout(self.stall):
                await response.write(chunk)
        except TimeoutError:
            message = f"this reader took over {self.stall:g}s to take an event"
            raise Dropped(message, stalled=True) from None

    async def _final(self, response: web.StreamResponse, kind: str, message: str) -> None:
        """The last event (best effort: a reader that stalled may never read it)."""
        chunk = _frame(kind, {"message": message, "at": render.iso(time.time())})
        with contextlib.suppress(ConnectionError, TimeoutError, Dropped):
            async with asyncio.timeout(min(self.stall, 1.0)):
                await response.write(chunk)


def _frame(kind: str, data: dict[str, Any], event_id: int | None = None) -> bytes:
    """One SSE event. JSON never holds a raw newline, so `data` is one line."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: ".encode() + render.dumps(data) + b"\n\n"


def _abort(request: web.Request) -> None:
    """Drop a reader that cannot keep up: what it has not read is discarded."""
    transport = request.transport
    if transport is not None:
        transport.abort()


async def _aclose(source: AsyncIterator[Event]) -> None:
    """Close the reader's event source; an error closing it is nothing to the reader, but a
    cancellation of the handler goes on up (swallowing it would lose the cancel)."""
    close = getattr(source, "aclose", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await close()


def routes(watch: Watch) -> list[web.RouteDef]:
    return [web.get("/watch", watch.handle)]
