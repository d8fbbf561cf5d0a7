"""The baseline: a bare aiohttp handler answering the same bytes /readyz answers."""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web

from healthd.cli import run_loop  # the same event loop healthd runs on (HEALTHD_EVENT_LOOP)

BODY = b'{"status":"healthy"}'


async def readyz(_: web.Request) -> web.Response:
    return web.Response(
        body=BODY, content_type="application/json", headers={"Cache-Control": "no-store"}
    )


async def main(port: int) -> None:
    app = web.Application(client_max_size=64 * 1024)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, handle_signals=False, keepalive_timeout=75, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    run_loop(main(int(sys.argv[1])))
