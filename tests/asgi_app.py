"""An ASGI app with healthd embedded (healthd.asgi), for tests that start it as a real process.

    python tests/asgi_app.py PORT [--server uvicorn|hypercorn] [--drain-delay 1s]
        [--grace 2s] [--quiet 500ms] [--deadline 30s] [--hook NAME:ok|raise|hang[:TIMEOUT]]...
        [--clash] [--plain] [--prefix P]

A FastAPI app: `GET /hello` (200 "hello"), `GET /slow?s=SECONDS` (a `slow started` line on
stderr when it begins, `slow finished` when it answers); its own lifespan logs `app
startup` and `app shutdown`. `--plain`: a bare ASGI callable instead, answering every
path "plain" and refusing the lifespan scope (no lifespan support). `--clash` gives the
FastAPI app its own `/readyz`. Hooks as in tests/embedded_app.py.
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

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

import healthd.asgi
from healthd import Health
from tests.embedded_app import hook

log = logging.getLogger("app")


def fastapi_app(clash: bool) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        log.info("app startup")
        yield
        log.info("app shutdown")

    api = FastAPI(lifespan=lifespan)

    @api.get("/hello", response_class=PlainTextResponse)
    async def hello() -> str:
        return "hello"

    @api.get("/slow", response_class=PlainTextResponse)
    async def slow(s: float = 1.0) -> str:
        log.info("slow started %s", s)
        await asyncio.sleep(s)
        log.info("slow finished %s", s)
        return f"slept {s}"

    if clash:

        @api.get("/readyz")
        async def mine() -> str:
            return "mine"

    return api


async def plain(scope: Any, receive: Any, send: Any) -> None:
    assert scope["type"] == "http", "no lifespan here"
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"5")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"plain"})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--server", default="uvicorn")
    parser.add_argument("--drain-delay", default="1s")
    parser.add_argument("--grace", default="2s")
    parser.add_argument("--quiet", default="500ms")
    parser.add_argument("--deadline", default="30s")
    parser.add_argument("--hook", action="append", default=[])
    parser.add_argument("--clash", action="store_true")
    parser.add_argument("--plain", action="store_true")
    parser.add_argument("--prefix", default="")
    args = parser.parse_args()
    health = Health(
        shutdown={
            "drain_delay": args.drain_delay, "grace": args.grace,
            "quiet": args.quiet, "deadline": args.deadline,
        },
    )  # fmt: skip
    for spec in args.hook:
        name, how, *timeout = spec.split(":")
        health.on_stop(hook(name, how), name=name, timeout=timeout[0] if timeout else "5s")
    app = healthd.asgi.Probes(
        plain if args.plain else fastapi_app(args.clash), health, prefix=args.prefix
    )
    quiet: dict[str, Any] = {"access_log": False} if args.server == "uvicorn" else {}
    healthd.asgi.serve(app, health, server=args.server, host="127.0.0.1", port=args.port, **quiet)


if __name__ == "__main__":
    main()
