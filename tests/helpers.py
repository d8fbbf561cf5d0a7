"""Building engines and apps around FakeChecks for API and engine tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from healthd.checks.base import Context, SpecBase
from healthd.config import Settings, parse_settings
from healthd.engine import Engine
from healthd.testing import FakeCheck
from healthd.web import probes


def settings(checks: list[dict[str, Any]], **top: Any) -> Settings:
    """Settings from Python data (checks default to `tcp` specs, to be swapped for fakes)."""
    import json

    tcp = {"kind": "tcp", "address": "127.0.0.1:9"}
    data = {**top, "checks": [c if c.get("kind", "tcp") != "tcp" else {**tcp, **c} for c in checks]}
    return parse_settings(json.dumps(data))


def engine_with(fakes: dict[str, FakeCheck], s: Settings, **kwargs: Any) -> Engine:
    def build(spec: SpecBase, context: Context) -> Any:
        return fakes[spec.name] if spec.name in fakes else spec.build(context)

    return Engine(s, build=build, **kwargs)


async def serve(
    aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
    app: web.Application,
    **kwargs: Any,
) -> TestClient[web.Request, web.Application]:
    """A test client for a probe app, served as the daemon serves it: its hot path in front
    of the router (`probes.front`)."""
    client = await aiohttp_client(app, **kwargs)
    runner = client.server.runner
    assert runner is not None
    assert runner.server is not None
    probes.front(app, runner.server)  # before the client's first connection
    return client
