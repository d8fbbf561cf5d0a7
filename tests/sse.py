"""A Server-Sent Events reader for tests: aiohttp's client, line by line."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class Message:
    """One event (or, with `comments`, one comment line: `kind` "comment")."""

    kind: str
    data: Any = None
    id: int | None = None
    at: float = field(default_factory=time.monotonic)  # when the reader got it


class Stream:
    """`async with Stream(session, url) as s:` then `await s.next()`; `closed` once EOF."""

    def __init__(
        self, session: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
    ) -> None:
        self.session, self.url, self.headers = session, url, headers or {}
        self.response: aiohttp.ClientResponse | None = None
        self.closed_at: float | None = None

    async def __aenter__(self) -> Stream:
        self.response = await self.session.get(
            self.url, headers=self.headers, timeout=aiohttp.ClientTimeout(total=None)
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.response is not None:
            self.response.close()

    @property
    def status(self) -> int:
        assert self.response is not None
        return self.response.status

    async def next(self, timeout: float = 5.0, comments: bool = False) -> Message:
        """The next event; EOFError when the stream ended, TimeoutError after `timeout`."""
        assert self.response is not None
        fields: dict[str, str] = {}
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    self.closed_at = time.monotonic()
                    raise EOFError("the stream ended")
                line = raw.decode().rstrip("\n")
                if line.startswith(":"):
                    if comments:
                        return Message("comment", line[1:].strip())
                    continue
                if line == "":
                    if "event" in fields or "data" in fields:
                        data = json.loads(fields["data"]) if "data" in fields else None
                        event_id = int(fields["id"]) if "id" in fields else None
                        return Message(fields.get("event", "message"), data, event_id)
                    fields = {}
                    continue
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")

    async def until(self, kind: str, timeout: float = 5.0, **match: Any) -> Message:
        """Skip events until one of `kind` whose data has the `match` items."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.next(timeout)
                data = message.data if isinstance(message.data, dict) else {}
                if message.kind == kind and all(data.get(k) == v for k, v in match.items()):
                    return message

    async def rest(self, timeout: float = 5.0) -> list[Message]:
        """Every event until the stream ends."""
        out = []
        try:
            while True:
                out.append(await self.next(timeout))
        except EOFError:
            return out
