"""`Watch`: an async iterator over a healthd's `/watch` events (reference §18).

    async for event in Watch("http://orders:8099", token=...):
        print(event.kind, event.data)      # snapshot, group, check, draining, dropped, unknown

- Every event's id is kept; a reconnect sends it as `Last-Event-ID`, so healthd resumes
  after it (nothing lost) while its ring holds it, or starts again with a `snapshot`.
- A lost stream (refused, reset, ended, or silent for more than twice the keep-alive period
  the stream announced in its head) yields one `unknown` event, then reconnects with capped,
  jittered exponential backoff until it is back; connecting is bounded by the same silence.
- A URL that answers but is not a healthd `/watch` raises `NotHealthd`, and a request
  healthd refuses (`?check=` without a token, an unknown check) `ClientError`: one line.
- A malformed event (bad JSON, no `name`…) is skipped; the first one is logged, once.

`Watch.state(group=…)` / `Watch.state(check=…)` is the state as the events left it, and
`unknown` while the stream is lost: what `Gate` reads. One iteration at a time per Watch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from yarl import URL

log = logging.getLogger("healthd.client")
KEEPALIVE = 15.0  # what a stream that does not announce its keep-alive is taken to use
BACKOFF = (0.05, 5.0)  # seconds: the first reconnect's ceiling, and the cap
KINDS = ("snapshot", "group", "check", "draining", "dropped")
UNKNOWN = "unknown"
MAX_LINE = 1 << 20  # bytes: a longer line is malformed


class ClientError(Exception):
    """Base of healthd.client's errors."""


class NotHealthd(ClientError):
    """The URL answered, but not with a healthd `/watch` stream (one line: what and where)."""


@dataclass(frozen=True, slots=True)
class Event:
    """One `/watch` event: `kind`, its JSON `data`, its `id` (None for `unknown`)."""

    kind: str
    data: Mapping[str, Any] = field(default_factory=dict)
    id: str | None = None


def watch_url(url: str, groups: Sequence[str] = (), checks: Sequence[str] = ()) -> URL:
    """`http://host:8099` or `…/watch` → the `/watch` URL with its filters."""
    base = URL(url)
    if base.scheme not in ("http", "https") or not base.host:
        raise ClientError(f"{url!r}: not an http(s) URL of a healthd")
    if not base.path.rstrip("/").endswith("/watch"):
        base = base.with_path(base.path.rstrip("/") + "/watch")
    query = [("group", g) for g in groups] + [("check", c) for c in checks]
    return base.with_query(query) if query else base


def backoff(attempt: int, first: float = BACKOFF[0], cap: float = BACKOFF[1]) -> float:
    """Full jitter: uniform in [0, min(cap, first * 2**attempt)]."""
    return random.uniform(0.0, min(cap, first * (2 ** min(attempt, 30))))  # noqa: S311 (jitter)


class _Lost(Exception):
    """The stream is gone (why: one line)."""


class Watch:
    """Iterate a healthd's `/watch` (see the module docstring)."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        groups: Sequence[str] = (),
        checks: Sequence[str] = (),
        session: aiohttp.ClientSession | None = None,
        backoff: tuple[float, float] = BACKOFF,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = watch_url(url, groups, checks)
        self.headers = {"Accept": "text/event-stream"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.backoff, self.clock = backoff, clock
        self.keepalive = KEEPALIVE  # the stream's, once it announced it
        self.last_id: str | None = None
        self.groups: dict[str, str] = {}  # group → state, as the last events left it
        self.checks: dict[str, str] = {}  # check → status
        self.connected = False  # a byte arrived since the last (re)connect
        self.reason = "not connected yet"  # why the state is unknown, while it is
        self.on_change: Callable[[], None] | None = None  # told when `state()` may differ
        self.malformed = 0  # events skipped
        self._session = session
        self._own_session = session is None

    @property
    def silence(self) -> float:
        """Seconds without a byte after which the stream counts as lost."""
        return 2 * self.keepalive

    def state(self, group: str = "readiness", check: str | None = None) -> str:
        """The group's state (or the check's status) now; `unknown` while disconnected."""
        if not self.connected:
            return UNKNOWN
        if check is not None:
            return self.checks.get(check, UNKNOWN)
        return self.groups.get(group, UNKNOWN)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        session = self._session or aiohttp.ClientSession()
        attempt, outage = 0, False  # outage: `unknown` was yielded, no byte since
        try:
            while True:
                try:
                    async for event in self._stream(session):
                        attempt, outage = 0, False
                        yield event
                    why = "the stream ended"
                except _Lost as exc:
                    why = str(exc)
                except (aiohttp.ClientError, OSError) as exc:
                    why = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
                if self.connected:
                    outage = False  # it came back (bytes, perhaps no event) and was lost again
                self._lost(why)
                if not outage:
                    outage = True
                    yield Event(UNKNOWN, {"message": self.reason})
                await asyncio.sleep(backoff(attempt, *self.backoff))
                attempt += 1
        finally:
            self.connected = False
            if self._own_session:
                await session.close()

    def _lost(self, why: str) -> None:
        self.connected = False
        self.reason = f"{self.url.with_query(None)}: {why}"[:300]
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    async def _stream(self, session: aiohttp.ClientSession) -> AsyncIterator[Event]:
        headers = dict(self.headers)
        if self.last_id is not None:
            headers["Last-Event-ID"] = self.last_id
        timeout = aiohttp.ClientTimeout(total=None, connect=self.silence, sock_read=None)
        try:
            async with asyncio.timeout(self.silence):
                response = await session.get(self.url, headers=headers, timeout=timeout)
        except TimeoutError:
            raise _Lost(f"no answer within {self.silence:g}s") from None
        async with response:
            await self._expect_stream(response)
            async for event in self._read(response):
                yield event

    async def _expect_stream(self, response: aiohttp.ClientResponse) -> None:
        kind = response.headers.get("Content-Type", "")
        if response.status == 200 and kind.startswith("text/event-stream"):
            return
        why, said = f"{response.status} {response.reason}", None
        if kind.startswith("application/json"):  # healthd's one-line errors: {"error": ...}
            with contextlib.suppress(aiohttp.ClientError, ValueError, TimeoutError):
                async with asyncio.timeout(self.silence):
                    body = await response.json()
                if isinstance(body, dict) and isinstance(body.get("error"), str):
                    said = body["error"].splitlines()[0][:200] if body["error"] else ""
        if said is not None:
            why += f": {said}"
        if response.status in (502, 503, 504):  # shutting down, full, a proxy: transient
            raise _Lost(why)
        if said is not None:  # healthd refused this request (a filter, the token)
            raise ClientError(f"{self.url}: {why}")
        kind = kind.split(";")[0] or "no content type"
        raise NotHealthd(
            f"{self.url.with_query(None)}: not a healthd /watch stream ({why}, {kind})"
        )

    async def _read(self, response: aiohttp.ClientResponse) -> AsyncIterator[Event]:
        fields: dict[str, str] = {}
        data: list[str] = []
        content = response.content
        while True:
            try:
                async with asyncio.timeout(self.silence):
                    raw = await content.readline()
            except TimeoutError:
                raise _Lost(f"silent for more than {self.silence:g}s") from None
            except ValueError:  # a line past aiohttp's limit
                raise _Lost("a line too long: not an event stream") from None
            if not raw:
                return  # EOF
            self._alive()
            line = raw.decode(errors="replace").rstrip("\r\n")
            if line == "":
                if data or fields:
                    event = self._event(fields, "\n".join(data))
                    if event is not None:
                        yield event
                fields, data = {}, []
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "":
                self._comment(value)
            elif name == "data":
                data.append(value)
            elif name in ("id", "event"):
                fields[name] = value

    def _alive(self) -> None:
        if not self.connected:
            self.connected, self.reason = True, ""
            self._changed()

    def _comment(self, text: str) -> None:
        """`: keepalive 15` in the head: the stream's keep-alive period."""
        word, _, value = text.partition(" ")
        if word == "keepalive":
            try:
                seconds = float(value)
            except ValueError:
                return
            if 0 < seconds < 86_400:
                self.keepalive = seconds

    def _event(self, fields: Mapping[str, str], text: str) -> Event | None:
        kind = fields.get("event", "message")
        try:
            data = json.loads(text) if text else {}
            if not isinstance(data, dict) or kind not in KINDS:
                raise ValueError(f"event {kind!r:.40} with {type(data).__name__} data")
            self._apply(kind, data)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            self.malformed += 1
            if self.malformed == 1:
                log.warning("%s: skipping a malformed event (%s); further ones are not logged",
                            self.url.with_query(None), str(exc)[:200])  # fmt: skip
            return None
        if "id" in fields:
            self.last_id = fields["id"]
        return Event(kind, data, fields.get("id"))

    def _apply(self, kind: str, data: Mapping[str, Any]) -> None:
        """Fold the event into `groups` and `checks` (KeyError/TypeError: malformed)."""
        if kind == "snapshot":
            groups = {str(g): str(s) for g, s in data["groups"].items()}
            checks = {str(n): str(c["status"]) for n, c in data.get("checks", {}).items()}
            self.groups, self.checks = groups, checks
        elif kind == "group":
            self.groups[str(data["name"])] = str(data["state"])
        elif kind == "check":
            self.checks[str(data["name"])] = str(data["status"])
        else:
            return
        self._changed()
