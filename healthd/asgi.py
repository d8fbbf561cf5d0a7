"""`healthd.asgi`: healthd inside an ASGI app (reference §17; embed/asgi.py, embed/asgiserve.py).

app = healthd.asgi.Probes(api, health)          # the probes, /metrics, lifespan, traffic
healthd.asgi.serve(app, health, port=8000)     # uvicorn (or "hypercorn"), the drain order
"""

from healthd.embed.asgi import Probes
from healthd.embed.asgiserve import serve, serve_async

__all__ = ["Probes", "serve", "serve_async"]
