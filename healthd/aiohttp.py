"""`healthd.aiohttp`: healthd inside an aiohttp app (reference §17; embed/aiohttp.py).

healthd.aiohttp.setup(app, health)             # the probes, /metrics, health's start/stop
healthd.aiohttp.run_app(app, health, port=8080)  # web.run_app with the drain order
"""

from healthd.embed.aiohttp import run_app, serve, setup

__all__ = ["run_app", "serve", "setup"]
