"""`healthd.asgi`: healthd inside an ASGI app (FastAPI, Starlette; reference §17).

app = healthd.asgi.Probes(FastAPI(), health)   # the probes before the app; lifespan
healthd.asgi.run(app, health, port=8000)       # uvicorn in process, with the drain order
"""

from healthd.embed.asgi import Probes, run, serve

__all__ = ["Probes", "run", "serve"]
