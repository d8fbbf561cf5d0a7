"""Building engines and apps around FakeChecks for API and engine tests."""

from __future__ import annotations

import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from healthd.checks.base import Context, SpecBase
from healthd.config import Settings, parse_settings
from healthd.deadline import Deadline
from healthd.health import Health
from healthd.model import CheckResult, Outcome, Reason
from healthd.observers import Telemetry
from healthd.testing import FakeCheck
from healthd.web import probes


def settings(checks: list[dict[str, Any]], **top: Any) -> Settings:
    """Settings from Python data (checks default to `tcp` specs, to be swapped for fakes)."""
    import json

    tcp = {"kind": "tcp", "address": "127.0.0.1:9"}
    data = {**top, "checks": [c if c.get("kind", "tcp") != "tcp" else {**tcp, **c} for c in checks]}
    return parse_settings(json.dumps(data))


def engine_with(
    fakes: dict[str, FakeCheck], s: Settings, telemetry: Telemetry | None = None, **kwargs: Any
) -> Health:
    """A Health running `s`, with FakeChecks for the named checks (and `telemetry`'s
    metrics, transition log and tracer, as the daemon wires them)."""
    if telemetry is not None:
        kwargs |= {
            "metrics": telemetry.metrics,
            "observers": telemetry.observers,
            "tracer": telemetry.tracer,
        }

    def build(spec: SpecBase, context: Context) -> Any:
        return fakes[spec.name] if spec.name in fakes else spec.build(context)

    return Health(settings=s, build=build, **kwargs)


async def run_now(health: Health, name: str) -> CheckResult:
    """Run `name` now within its own timeout and record the result (as a posted heartbeat does)."""
    spec = health.store.spec(name)
    assert spec is not None, name
    return await health.runs.join(name, Deadline.after(spec.timeout, health.clock))


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


def spec_named(settings: Settings, name: str) -> Any:
    """The check spec called `name` among the settings' checks (implicit ones included)."""
    return next(c for c in settings.all_checks if c.name == name)


def result(
    name: str,
    outcome: Outcome,
    message: str = "",
    *,
    at: float | None = None,
    duration: float = 0.002,
    budget: float = 0.5,
) -> CheckResult:
    """One run's result of `name` (a tcp check): started `at` (monotonic; default now),
    refused when it failed."""
    reason = Reason.OK if outcome.good else Reason.REFUSED
    started = time.monotonic() if at is None else at
    return CheckResult(
        name, "tcp", outcome, reason, message or outcome.value, duration, started, time.time(),
        budget,
    )  # fmt: skip


@contextlib.asynccontextmanager
async def http_server(
    app: web.Application, *, tls: ssl.SSLContext | None = None, **options: Any
) -> AsyncIterator[list[int]]:
    """`app` served on a free loopback port (and a second one over TLS with `tls`): the
    ports, plain first. Cleaned up on the way out."""
    app_runner = web.AppRunner(app, **options)
    await app_runner.setup()
    try:
        await web.TCPSite(app_runner, "127.0.0.1", 0).start()
        if tls is not None:
            await web.TCPSite(app_runner, "127.0.0.1", 0, ssl_context=tls).start()
        yield [address[1] for address in app_runner.addresses]
    finally:
        await app_runner.cleanup()
