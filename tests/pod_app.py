"""The app of a pod in tests/podrig.py: aiohttp answering `ok`, stopped by SIGTERM as
`web.run_app` stops (listeners closed first, requests in flight finished).

    python tests/pod_app.py PORT
"""

from __future__ import annotations

import sys

from aiohttp import web


async def ok(_: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    app = web.Application()
    app.router.add_get("/", ok)
    web.run_app(
        app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None,
        backlog=4096, shutdown_timeout=5.0,
    )  # fmt: skip


if __name__ == "__main__":
    main()
