"""Shell 3 (reference §17): healthd embedded in a Python web app.

drain.py    the stop order, once for every framework, behind a small `Server` protocol
traffic.py  the app's requests in flight and the time of the last arrival
aiohttp.py  setup(app, health) and run_app(app, health, ...) for aiohttp
asgi.py     Probes(app, health): the probes, lifespan and traffic for any ASGI app
asgiserve.py serve(app, health, server="uvicorn"|"hypercorn"): the server in process, drained
"""
