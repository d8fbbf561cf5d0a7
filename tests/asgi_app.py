"""A Starlette app with healthd embedded through healthd.asgi, under uvicorn, for tests
that start it as a real process.

    python tests/asgi_app.py PORT [--drain-delay 1s] [--grace 2s] [--quiet 500ms]
        [--hook NAME:ok|raise|hang[:TIMEOUT]]... [--plain]

Routes: `GET /hello`, `GET /slow?s=SECONDS` (`slow started` / `slow finished` on stderr).
The app's own lifespan logs `app startup` and `app shutdown`. `--plain` wraps a bare
ASGI callable (no lifespan support) instead of Starlette.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import healthd.asgi
from healthd import Health
from tests.embedded_app import hook

log = logging.getLogger("app")


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


async def slow(request: Request) -> PlainTextResponse:
    seconds = float(request.query_params.get("s", "1"))
    log.info("slow started %s", seconds)
    await asyncio.sleep(seconds)
    log.info("slow finished %s", seconds)
    return PlainTextResponse(f"slept {seconds}")


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    log.info("app startup")
    yield
    log.info("app shutdown")


async def plain(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A bare ASGI app that knows nothing of lifespan (it raises on it, as many do)."""
    if scope["type"] != "http":
        raise RuntimeError(f"unsupported scope {scope['type']}")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--drain-delay", default="1s")
    parser.add_argument("--grace", default="2s")
    parser.add_argument("--quiet", default="500ms")
    parser.add_argument("--hook", action="append", default=[])
    parser.add_argument("--plain", action="store_true")
    args = parser.parse_args()
    routes = [Route("/hello", hello), Route("/slow", slow)]
    app: Any = plain if args.plain else Starlette(routes=routes, lifespan=lifespan)
    health = Health(
        shutdown={"drain_delay": args.drain_delay, "grace": args.grace, "quiet": args.quiet}
    )
    for spec in args.hook:
        name, how, *timeout = spec.split(":")
        health.on_stop(hook(name, how), name=name, timeout=timeout[0] if timeout else "5s")
    healthd.asgi.run(healthd.asgi.Probes(app, health), health, host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
