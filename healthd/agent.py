"""The HAProxy agent-check listener (`server.agent_listen`, reference §18).

On each TCP connection healthd writes one line about the readiness group and closes:

    healthy      up ready 100%
    degraded     up ready <server.agent_degraded_weight>%
    draining     drain
    unhealthy    down #<check>: <message>     (the first failing critical check, ≤100 bytes)
    unknown      down #<check>: <message>     (or `down #readiness unknown` before any result)

The line is read from the store's state and its cached snapshot: an agent connecting
never runs a check. `up` leaves DOWN and `ready` leaves DRAIN/MAINT in HAProxy, so every
`up` line carries both and a weight (FIELD-NOTES: HAProxy 2.6).

ATTENTION: bounded per connection. The line is written at once, then the write side is
shut (FIN after the line); whatever the peer sends is discarded as it arrives (never
buffered), and the connection is aborted `LINGER` seconds after it opened if the peer
neither closed nor read. Closing with unread input would reset the connection and could
cost the peer the line, which is why the reading side stays open until then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Callable

from healthd.config import Settings
from healthd.groups import READINESS
from healthd.listeners import BACKLOG, bind
from healthd.model import Snapshot, State, Status
from healthd.store import Store
from healthd.web import render

log = logging.getLogger("healthd")
LINGER = 2.0  # seconds an agent connection may stay open after its line
REASON_BYTES = 100
REPLIES = ("up", "drain", "down")  # the reply words, as the metric labels them
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close sends RST


def reason(snapshot: Snapshot, details: bool = True) -> str:
    """Why readiness is down, for `down #…`: the first failing (or unknown) critical
    check and its message (only its reason code when `details` is off), on one line of
    printable text, at most `REASON_BYTES` bytes of UTF-8."""
    first = next((c for c in snapshot.checks if c.critical and c.status.failing), None) or next(
        (c for c in snapshot.checks if c.critical and c.status is Status.UNKNOWN), None
    )
    if first is None:
        text = f"{snapshot.group} {snapshot.state.value}"
    elif not details or first.last is None:
        why = first.last.reason.value if first.last is not None else "no result yet"
        text = f"{first.name}: {first.status.value} ({why})"
    else:
        text = f"{first.name}: {render.message(first)}"
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return text.encode()[:REASON_BYTES].decode(errors="ignore").strip()


def reply(store: Store, settings: Settings) -> bytes:
    """The one line an agent gets now, from the store's state (no check runs)."""
    state = store.current(READINESS)
    if state is State.HEALTHY:
        return b"up ready 100%\n"
    if state is State.DEGRADED:
        return f"up ready {settings.server.agent_degraded_weight}%\n".encode()
    if state is State.DRAINING:
        return b"drain\n"
    details = settings.server.show_details != "never"
    return f"down #{reason(store.snapshot(READINESS), details)}\n".encode()


class _Connection(asyncio.Protocol):
    """One agent connection: its line, FIN, input discarded, aborted after LINGER."""

    __slots__ = ("agent", "timer", "transport")

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        line = self.agent.line()
        transport.write(line)
        if transport.can_write_eof():
            transport.write_eof()
        self.timer = asyncio.get_running_loop().call_later(LINGER, self.cut)
        self.agent.open += 1

    def cut(self) -> None:
        """LINGER is over: reset the connection (SO_LINGER 0), so not even the kernel keeps
        it (a plain close after our FIN would leave it in FIN_WAIT2 for a minute)."""
        if self.transport is None:
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        self.transport.abort()

    def data_received(self, data: bytes) -> None:
        pass  # garbage or `agent-send`: discarded, never kept

    def eof_received(self) -> bool:
        return False  # the peer is done: the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.transport = None
        self.agent.open -= 1


class Agent:
    """The agent listener of one daemon: the store to read, the settings in force."""

    def __init__(self, store: Store, settings: Callable[[], Settings]) -> None:
        self.store, self.settings = store, settings
        self.replies = dict.fromkeys(REPLIES, 0)  # connections answered, by reply word
        self.open = 0
        self.bound = ""
        self._server: asyncio.Server | None = None

    def line(self) -> bytes:
        line = reply(self.store, self.settings())
        word = line.split(b" ", 1)[0].rstrip().decode()
        self.replies[word] += 1
        return line

    def counts(self) -> dict[tuple[str, ...], float]:
        """`healthd_agent_connections_total` by `reply`."""
        return {(word,): float(n) for word, n in self.replies.items()}

    async def start(self, address: str) -> None:
        """Listen on `address` (ConfigError: cannot)."""
        sock = bind(address, "server.agent_listen")
        family = sock.family
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), sock=sock, backlog=BACKLOG
        )
        bound = sock.getsockname()
        self.bound = (
            f"{bound[0]}:{bound[1]}" if family == socket.AF_INET else f"[{bound[0]}]:{bound[1]}"
        )
        log.info("HAProxy agent-check on %s", self.bound)

    async def close(self) -> None:
        """Stop listening; connections still open finish within LINGER."""
        if self._server is not None:
            self._server.close()
            self._server = None
