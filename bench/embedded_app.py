"""The app bench/embedded.py measures: aiohttp with healthd.aiohttp.setup, served by
healthd.aiohttp.run_app in a process of its own.

    python bench/embedded_app.py PORT [--listen PORT] [--checks N]

Routes: `/ok` (a trivial `web.Response(text="ok")`), `/work` (a yield to the loop and a
small CPU loop: a route that does something), and the probes. Its checks: a `loop`
check every 1 s, and `--checks N` in-process `checks.Func` checks every 1 s, half async
(a few ms asleep on the loop), half plain functions (a few ms asleep in their thread).
The token `bench` shows the details (`/health?verbose`).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from aiohttp import web

import healthd.aiohttp
from healthd import Health, checks

TOKEN = "bench"
WORK = 2_000  # iterations of /work's CPU loop (tens of µs)
NAP = 0.003  # what each in-process check sleeps


async def ok(_: web.Request) -> web.Response:
    return web.Response(text="ok")


async def work(_: web.Request) -> web.Response:
    await asyncio.sleep(0)
    total = 0
    for i in range(WORK):
        total += i * i
    return web.Response(text=str(total))


async def nap_async() -> None:
    await asyncio.sleep(NAP)


def nap_sync() -> None:
    time.sleep(NAP)


def build(count: int, listen: int | None) -> tuple[web.Application, Health]:
    specs: list[Any] = [checks.Loop(name="loop", interval="1s", timeout="500ms")]
    for i in range(count):
        fn = nap_async if i % 2 else nap_sync
        specs.append(checks.Func(f"func{i}", fn, interval="1s", timeout="500ms"))
    health = Health(checks=specs, server={"token": TOKEN})
    app = web.Application()
    app.add_routes([web.get("/ok", ok), web.get("/work", work)])
    where = f"127.0.0.1:{listen}" if listen is not None else None
    healthd.aiohttp.setup(app, health, listen=where)
    return app, health


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--listen", type=int, default=None, help="the probe thread's port")
    parser.add_argument("--checks", type=int, default=0, help="in-process checks to add")
    args = parser.parse_args()
    app, health = build(args.checks, args.listen)
    healthd.aiohttp.run_app(app, health, host="127.0.0.1", port=args.port, access_log=None)


if __name__ == "__main__":
    main()
