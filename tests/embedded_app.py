"""An aiohttp app with healthd embedded, for tests that start it as a real process.

    python tests/embedded_app.py PORT [--drain-delay 1s] [--grace 2s] [--quiet 500ms]
        [--deadline 30s] [--hook NAME:ok|raise|hang[:TIMEOUT]]... [--clash] [--prefix P]

Routes: `GET /hello` (200 "hello"), `GET /slow?s=SECONDS` (answers after that long; a
`slow started` line on stderr when it begins, `slow finished` when it answers). Each
`--hook` is registered in order with `health.on_stop` (so they run last first): `ok`
logs `hook NAME ran`, `raise` raises RuntimeError, `hang` never returns. `--clash` adds
the app's own `/readyz` route before `setup`; `--json` logs JSON lines.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script

from aiohttp import web

import healthd.aiohttp
from healthd import Health

log = logging.getLogger("app")


def hook(name: str, how: str) -> Callable[[], Awaitable[None]]:
    async def ok() -> None:
        log.info("hook %s ran", name)

    async def raises() -> None:
        raise RuntimeError(f"{name} is broken")

    async def hangs() -> None:
        await asyncio.Event().wait()

    return {"ok": ok, "raise": raises, "hang": hangs}[how]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--drain-delay", default="1s")
    parser.add_argument("--grace", default="2s")
    parser.add_argument("--quiet", default="500ms")
    parser.add_argument("--deadline", default="30s")
    parser.add_argument("--hook", action="append", default=[])
    parser.add_argument("--clash", action="store_true")
    parser.add_argument("--prefix", default="")
    parser.add_argument("--json", action="store_true", help="logging.format: json")
    args = parser.parse_args()

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    async def slow(request: web.Request) -> web.Response:
        seconds = float(request.query.get("s", "1"))
        log.info("slow started %s", seconds)
        await asyncio.sleep(seconds)
        log.info("slow finished %s", seconds)
        return web.Response(text=f"slept {seconds}")

    app = web.Application()
    app.add_routes([web.get("/hello", hello), web.get("/slow", slow)])
    if args.clash:
        app.add_routes([web.get("/readyz", hello)])
    health = Health(
        shutdown={
            "drain_delay": args.drain_delay, "grace": args.grace,
            "quiet": args.quiet, "deadline": args.deadline,
        },
        logging={"format": "json" if args.json else "text"},
    )  # fmt: skip
    for spec in args.hook:
        name, how, *timeout = spec.split(":")
        health.on_stop(hook(name, how), name=name, timeout=timeout[0] if timeout else "5s")
    healthd.aiohttp.setup(app, health, prefix=args.prefix)
    healthd.aiohttp.run_app(app, health, host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
