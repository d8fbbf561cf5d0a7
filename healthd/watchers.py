"""Open streams (SSE `/watch`, gRPC `Watch`) under one limit, `server.max_watchers`.

One `Watchers` per daemon. A stream handler takes a slot with `enter(transport)` (False:
full, answer 503 / RESOURCE_EXHAUSTED) and gives it back with `leave(transport)`; the
`healthd_watchers{transport}` gauge reads `open` at scrape time. When the listeners close
the daemon calls `close()`: every stream ends then (`closed` is set), it never holds `grace`.
"""

from __future__ import annotations

import asyncio

TRANSPORTS = ("sse", "grpc")


class Watchers:
    """How many streams are open, by transport, and whether another one may open."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: dict[str, int] = dict.fromkeys(TRANSPORTS, 0)
        self.closed = asyncio.Event()  # set once, when the listeners close

    def close(self) -> None:
        """The listeners are closing: every stream should end now."""
        self.closed.set()

    @property
    def total(self) -> int:
        return sum(self.open.values())

    def enter(self, transport: str) -> bool:
        """Take a slot for a new stream; False when `limit` streams are open already."""
        if self.total >= self.limit:
            return False
        self.open[transport] += 1
        return True

    def leave(self, transport: str) -> None:
        """Give back a slot taken by `enter`."""
        self.open[transport] -= 1

    def gauge(self) -> dict[tuple[str, ...], float]:
        """{(transport,): open streams}, for `Metrics.gauge`."""
        return {(transport,): float(count) for transport, count in self.open.items()}
