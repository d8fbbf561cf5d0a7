"""The app of a pod in tests/podrig.py: aiohttp answering `ok`, stopped by SIGTERM as
`web.run_app` stops (listeners closed first, requests in flight finished); with
`--embedded DRAIN` healthd is embedded (its probes on the app's port, and
`healthd.aiohttp.run_app`'s drain order with that drain_delay).

    python tests/pod_app.py PORT [--embedded DRAIN]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script

from aiohttp import web


async def ok(_: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    app = web.Application()
    app.router.add_get("/", ok)
    if "--embedded" in sys.argv:
        import healthd.aiohttp
        from healthd import Health

        drain = sys.argv[sys.argv.index("--embedded") + 1]
        health = Health(shutdown={"drain_delay": f"{drain}s", "grace": "3s"})
        healthd.aiohttp.setup(app, health)
        healthd.aiohttp.run_app(
            app, health, host="127.0.0.1", port=int(sys.argv[1]), access_log=None
        )
        return
    web.run_app(
        app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None,
        backlog=4096, shutdown_timeout=5.0,
    )  # fmt: skip


if __name__ == "__main__":
    main()
