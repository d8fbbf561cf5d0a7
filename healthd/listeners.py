"""The listening sockets, owned here so that closing them loses no connection (reference §6).

aiohttp's `site.stop()` closes a listener at once: connections the kernel completed
into its accept queue are reset, and `pre_shutdown()` then closes every connection that
looks idle, including one accepted a moment ago whose request is still in the socket
buffer. A daemon descheduled around the close (a loaded node, SIGSTOP) has many of both.
`Listener.close()` and `close_idle()` instead:

    1. keep a duplicate of the listening socket, so `site.stop()` only stops asyncio
       watching it while the kernel keeps the accept queue; connections asyncio accepted
       already attach to its server first (one loop turn before `site.stop()`);
    2. accept everything queued in one synchronous burst (no await: nothing can slip in
       behind it), then close the socket: from here on connects are refused;
    3. hand each accepted socket to the aiohttp server, like any other connection;
    4. close the connections with nothing to read (idle keep-alive); a connection whose
       request is in its socket buffer is left to be read, answered (with `Connection:
       close`) and closed by aiohttp itself, and one that has not sent its first request
       yet gets `FIRST_REQUEST` to send it.

ATTENTION: the only connects that can still be reset are those whose handshake completes
in the microseconds between the burst and the close; `closed_at` (wall clock) is logged so
a test can judge every error against it.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import socket
import struct
import termios
import time
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

from healthd.deadline import Clock
from healthd.durations import human_duration
from healthd.errors import ConfigError

BACKLOG = 4096  # capped by net.core.somaxconn; a reconnect storm during the drain needs room
SETTLE_ROUNDS = 5  # loop iterations with nothing left to read before idle connections close
FIRST_REQUEST = 0.5  # seconds a connection accepted before the close has to send its request


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def bind(address: str, key: str) -> socket.socket:
    """A non-blocking listening socket on `address` (`host:port`); ConfigError naming `key`
    when it cannot listen. Every listener healthd opens is bound here."""
    host, port = split_listen(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family, backlog=BACKLOG)
    except OSError as exc:
        reason = exc.strerror or exc
        raise ConfigError(f"{key}: cannot listen on {address}: {reason}") from None
    sock.setblocking(False)
    return sock


def unread(transport: Any) -> int:
    """Bytes waiting in a connection's socket buffer (-1: it is closing)."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.fileno() < 0:
        return -1
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except OSError:
        return -1
    return int(struct.unpack("i", raw)[0])


class Listener:
    """One listening socket served by `runner`."""

    def __init__(self, runner: web.AppRunner, address: str, key: str) -> None:
        self.runner, self.address, self.key = runner, address, key
        self.sock: socket.socket | None = None
        self.site: web.SockSite | None = None
        self.closed_at = 0.0  # wall clock

    async def start(self) -> None:
        self.sock = sock = bind(self.address, self.key)
        self.site = web.SockSite(self.runner, sock, backlog=BACKLOG)
        await self.site.start()

    async def close(self) -> int:
        """Stop listening without resetting what the kernel queued; the number handed over."""
        if self.sock is None or self.site is None:
            return 0
        keep = self.sock.dup()
        loop = asyncio.get_running_loop()
        # asyncio's accept callback may have taken connections off the queue already and
        # scheduled the tasks that attach them to its server: stop it accepting, let those
        # tasks take their first step (one loop turn), and only then close its server, or
        # their attach fails and the sockets are dropped (a reset, seen under load).
        loop.remove_reader(self.sock.fileno())
        await asyncio.sleep(0)
        await self.site.stop()  # asyncio closes its server and its descriptor only
        queued: list[socket.socket] = []
        try:
            while True:  # no await in here: the burst and the close are one step
                try:
                    conn, _ = keep.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break  # e.g. out of descriptors: what is left is refused, as after a close
                queued.append(conn)
        finally:
            keep.close()
            self.closed_at = time.time()
            self.sock = self.site = None
        server = self.runner.server
        for conn in queued:
            conn.setblocking(False)
            if server is None:
                conn.close()
                continue
            await loop.connect_accepted_socket(server, conn)
        return len(queued)


async def close_idle(servers: list[web.Server], until: float) -> None:
    """Close connections with nothing to read; leave the others to be answered and closed.

    A connection that has not carried a request yet (a client connected just before the
    close and has not written, or its bytes are still on the way) gets up to
    `FIRST_REQUEST` to send one. Runs until `SETTLE_ROUNDS` loop iterations in a row find
    nothing to read and nothing new (connections asyncio accepted just before the close
    attach a few iterations later), or until `until` (monotonic).
    """
    seen: set[RequestHandler] = set()
    quiet = 0
    fresh_until = min(until, time.monotonic() + FIRST_REQUEST)
    while time.monotonic() < until:
        busy = waiting = False
        for server in servers:
            for conn in server.connections:
                if conn in seen:
                    continue
                if unread(conn.transport) > 0:
                    busy = True  # its request is in the buffer: read it next iteration
                    continue
                if _requests(conn) == 0 and time.monotonic() < fresh_until:
                    waiting = True
                    continue
                seen.add(conn)
                busy = True
                if _idle(conn):
                    conn.force_close()  # what aiohttp's own keep-alive timeout does to it
                else:
                    conn.close()  # busy with a request: closes after answering it
        quiet = 0 if busy else quiet + 1
        if quiet >= SETTLE_ROUNDS and not waiting:
            return
        # ATTENTION: nothing signals "bytes arrived" on a socket aiohttp reads, so a fresh
        # connection is looked at again every millisecond, for FIRST_REQUEST at most.
        await asyncio.sleep(0.001 if waiting and quiet >= SETTLE_ROUNDS else 0)


# aiohttp keeps a connection's request count and its "waiting for the next request" future
# private; these read them as its own keep-alive timeout does, with safe defaults.


def _requests(conn: RequestHandler) -> int:
    """How many requests the connection has carried."""
    return int(getattr(conn, "_request_count", 1))


def _idle(conn: RequestHandler) -> bool:
    """Waiting for its next request, with none read."""
    waiter = getattr(conn, "_waiter", None)
    return waiter is not None and not waiter.done()


class BadRequests:
    """aiohttp's server logger, made quiet about malformed requests.

    aiohttp logs every request it cannot parse (a 60 KB header, garbage on the port) with
    a full traceback at ERROR: anyone who can reach the probe port could flood the log. A
    malformed request (an `HttpProcessingError`: it was answered 4xx) is counted here and
    logged as one short line at most once per `every` seconds, saying how many there were;
    anything else (a handler's bug, a 500) goes through with its traceback.
    """

    def __init__(
        self, logger: logging.Logger, every: float = 10.0, clock: Clock = time.monotonic
    ) -> None:
        self.logger, self.every, self.clock = logger, every, clock
        self.count = 0  # malformed requests since start (healthd_bad_requests_total)
        self._quiet = 0  # counted since the last line
        self._next = 0.0

    def _bad(self, args: tuple[object, ...], exc: HttpProcessingError) -> None:
        self.count += 1
        self._quiet += 1
        now = self.clock()
        if now < self._next:
            return
        self._next = now + self.every
        remote = args[0] if args else "?"
        why = "".join(c if c.isprintable() else "?" for c in exc.message.splitlines()[0])[:120]
        more = f" ({self._quiet - 1} more in the last {human_duration(self.every)})"
        self.logger.warning(
            "bad request from %s: %s: %s%s", remote, type(exc).__name__, why,
            more if self._quiet > 1 else "",
        )  # fmt: skip
        self._quiet = 0

    def exception(self, msg: str, *args: object, exc_info: object = True, **kw: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            self._bad(args, exc_info)
            return
        self.logger.exception(msg, *args, exc_info=exc_info, **kw)  # type: ignore[arg-type]

    def debug(self, msg: str, *args: object, **kw: Any) -> None:
        exc = kw.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            self._bad(args, exc)
            return
        self.logger.debug(msg, *args, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.logger, name)  # warning, error, isEnabledFor, ...
