"""HTTP plumbing every listener shares: errors, the request tracker, the bearer token.

Bad input is a 4xx with a one-line JSON message and `Cache-Control: no-store`, never a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Protocol

from aiohttp import hdrs, web
from multidict import MultiMapping

MAX_BODY = 64 * 1024
NO_STORE = {"Cache-Control": "no-store"}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Asked(Protocol):
    """What the probe views read of a request: an aiohttp `web.Request`, or an ASGI
    request (embed/asgi.py) answered by the same views."""

    @property
    def method(self) -> str: ...
    @property
    def path_qs(self) -> str: ...
    @property
    def query(self) -> MultiMapping[str]: ...
    @property
    def headers(self) -> MultiMapping[str]: ...
    @property
    def match_info(self) -> Mapping[str, str]: ...


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=NO_STORE)


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """HTTP errors as one-line JSON with `no-store` (the admin API's error shape)."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error(exc.status, exc.reason)
    response.headers.update(NO_STORE)
    return response


class InFlight:
    """The requests being answered that wait on something (checks, a reload), for the
    lifecycle: it waits for them during `grace`, then cancels and logs the rest.

    ATTENTION: a cached probe answer never awaits, so it can neither be in flight at a
    signal nor be cancelled: only the paths that await are tracked, which keeps the hot
    path free of a middleware.
    """

    def __init__(self) -> None:
        self.requests: dict[asyncio.Task[Any], tuple[Asked, float]] = {}
        self.served = 0
        self.closing = False  # shutting down: answers close their connections
        self.idle = asyncio.Event()  # set when closing and nothing is in flight

    @contextlib.contextmanager
    def track(self, request: Asked) -> Iterator[None]:
        task = asyncio.current_task()
        assert task is not None
        self.requests[task] = (request, time.monotonic())
        self.idle.clear()  # a request read from a connection taken at the close counts too
        try:
            yield
        finally:
            del self.requests[task]
            if self.closing and not self.requests:
                self.idle.set()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        with self.track(request):
            return await handler(request)

    def finish(self, response: web.StreamResponse) -> web.StreamResponse:
        """Every answer is `Cache-Control: no-store`; once closing, every answer also closes
        its connection, so no idle keep-alive connection is left when the listeners close.

        Called by each handler on its way out (a response-prepare signal or a middleware
        would do the same at several times the cost on the hot path).
        """
        self.served += 1
        response.headers["Cache-Control"] = "no-store"
        if self.closing:
            response.force_close()
            response.headers[hdrs.CONNECTION] = "close"
        return response

    def wrap(self, handler: Handler) -> Handler:
        """`handler` whose answers go through `finish` (for routes others add, e.g. /metrics)."""

        async def finished(request: web.Request) -> web.StreamResponse:
            return self.finish(await handler(request))

        return finished


def authorized(request: Asked, token: str) -> bool:
    """A valid `Authorization: Bearer <token>`, compared in constant time."""
    return bearer_matches(request.headers.get("Authorization", ""), token)


def bearer_matches(header: str, token: str) -> bool:
    """`header` is `Bearer <token>` (constant-time compare; an empty token matches nothing).
    The gRPC health server reads its `authorization` metadata with it too."""
    if not token:
        return False
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )
