"""The close boundary (DESIGN §6), in process: a connection the kernel accepted before the
listener closed gets its answer; a connect after the close is refused; idle ones close."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from healthd.listeners import FIRST_REQUEST, Listener, close_idle

REQUEST = b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n"


async def livez(_: web.Request) -> web.Response:
    return web.Response(text="ok")


@pytest.fixture
async def served() -> AsyncIterator[tuple[web.AppRunner, Listener]]:
    app = web.Application()
    app.router.add_get("/livez", livez)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    listener = Listener(runner, "127.0.0.1:0", "server.listen")
    await listener.start()
    try:
        yield runner, listener
    finally:
        await runner.cleanup()


def port(listener: Listener) -> int:
    assert listener.sock is not None
    return int(listener.sock.getsockname()[1])


async def answer(sock: socket.socket, timeout: float = 3.0) -> bytes:
    """Everything the server writes until it closes the connection."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    chunks = []
    async with asyncio.timeout(timeout):
        while chunk := await loop.sock_recv(sock, 65536):
            chunks.append(chunk)
    return b"".join(chunks)


async def test_a_connection_queued_in_the_kernel_at_the_close_is_answered(
    served: tuple[web.AppRunner, Listener],
) -> None:
    """Connected (and request written) with no chance for the loop to accept: still answered."""
    runner, listener = served
    client = socket.create_connection(("127.0.0.1", port(listener)))  # no await: still queued
    client.sendall(REQUEST)
    taken = await listener.close()
    assert runner.server is not None
    await close_idle([runner.server], time.monotonic() + 2)
    assert taken == 1
    assert (await answer(client)).startswith(b"HTTP/1.1 200")
    client.close()


async def test_a_connection_asyncio_accepted_just_before_the_close_is_answered(
    served: tuple[web.AppRunner, Listener],
) -> None:
    """The race a loaded loop hits: asyncio's accept callback has taken the connection off
    the kernel queue and scheduled the task that attaches it to the server, and the close
    runs before that task's first step. Closing the asyncio server then would make the
    attach fail and drop the socket (the client sees a reset): the close lets those tasks
    attach first, so the connection is answered like any other."""
    runner, listener = served
    assert listener.sock is not None
    client = socket.create_connection(("127.0.0.1", port(listener)))
    client.sendall(REQUEST)
    loop = asyncio.get_running_loop()
    selector = loop._selector  # type: ignore[attr-defined]  # the default selector loop's
    accept = selector.get_key(listener.sock.fileno()).data[0]  # the listener's read callback
    accept._run()  # the selector reported it readable in this iteration: accepted, not attached
    taken = await listener.close()  # no await in between, as in the same loop iteration
    assert runner.server is not None
    await close_idle([runner.server], time.monotonic() + 2)
    assert taken == 0  # asyncio had it, not the kernel queue
    assert (await answer(client)).startswith(b"HTTP/1.1 200")
    client.close()


async def test_a_connect_after_the_close_is_refused(
    served: tuple[web.AppRunner, Listener],
) -> None:
    """Once closed, the port refuses (nothing lingers half-open)."""
    _, listener = served
    number = port(listener)
    await listener.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", number), timeout=1.0)


async def test_a_connection_that_writes_its_request_after_the_close_is_answered(
    served: tuple[web.AppRunner, Listener],
) -> None:
    """Accepted before the close, first request written after it: answered, not cut."""
    runner, listener = served
    loop = asyncio.get_running_loop()
    client = socket.create_connection(("127.0.0.1", port(listener)))
    client.setblocking(False)
    await asyncio.sleep(0.05)  # accepted and attached, waiting for its first request
    await listener.close()
    assert runner.server is not None
    closing = asyncio.create_task(close_idle([runner.server], time.monotonic() + 2))
    await asyncio.sleep(FIRST_REQUEST / 5)
    await loop.sock_sendall(client, REQUEST)
    assert (await answer(client)).startswith(b"HTTP/1.1 200")
    await closing
    client.close()


async def test_an_idle_keep_alive_connection_is_closed_at_once(
    served: tuple[web.AppRunner, Listener],
) -> None:
    """A connection that was answered and sits idle is closed without waiting."""
    runner, listener = served
    loop = asyncio.get_running_loop()
    client = socket.create_connection(("127.0.0.1", port(listener)))
    client.setblocking(False)
    await loop.sock_sendall(client, REQUEST)
    first = await asyncio.wait_for(loop.sock_recv(client, 65536), 3.0)
    assert first.startswith(b"HTTP/1.1 200")
    await listener.close()
    assert runner.server is not None
    started = time.monotonic()
    await close_idle([runner.server], time.monotonic() + 2)
    assert time.monotonic() - started < FIRST_REQUEST / 2
    assert await answer(client) == b""  # closed by the server, nothing more said
    client.close()
