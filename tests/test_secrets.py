"""Secrets never leave healthd (DESIGN §4): not in spans, /admin/state, /health, /metrics or logs.

Every secret-carrying key is set to a distinct marker, every check fails on its error path
(refused ports, a server answering 503), and each output is searched for every marker.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from healthd.config import parse_settings
from healthd.deadline import Deadline
from healthd.lifecycle import Daemon
from healthd.model import Status
from healthd.observers import setup

Client = TestClient[web.Request, web.Application]
SECRETS = {
    "token": "tok-s3cret-0",
    "postgres": "pg-s3cret-1",
    "mysql": "my-s3cret-2",
    "redis": "rd-s3cret-3",
    "amqp": "mq-s3cret-4",
    "mqtt": "mt-s3cret-5",
    "nats": "nt-s3cret-6",
    "http": "ht-s3cret-7",
    "http-query": "hq-s3cret-8",
    "http-header": "hh-s3cret-9",
    "remote": "rm-s3cret-10",
}
AUTH = {"Authorization": f"Bearer {SECRETS['token']}"}


def config(refused: int, web_port: int) -> str:
    s, down, up = SECRETS, f"127.0.0.1:{refused}", f"127.0.0.1:{web_port}"
    return f"""
server: {{token: {s["token"]}, show_details: when_authorized}}
defaults: {{timeout: 2s, interval: 10s}}
checks:
  - {{name: pg, kind: postgres, dsn: "postgresql://app:{s["postgres"]}@{down}/app"}}
  - {{name: my, kind: mysql, dsn: "mysql://root:{s["mysql"]}@{down}/test"}}
  - {{name: rd, kind: redis, url: "redis://:{s["redis"]}@{down}/0"}}
  - {{name: mq, kind: amqp, url: "amqp://guest:{s["amqp"]}@{down}/"}}
  - {{name: mt, kind: mqtt, url: "mqtt://user:{s["mqtt"]}@{down}"}}
  - {{name: nt, kind: nats, url: "nats://user:{s["nats"]}@{down}"}}
  - name: ht
    kind: http
    url: "http://user:{s["http"]}@{up}/status?token={s["http-query"]}"
    headers: {{X-Api-Key: "{s["http-header"]}"}}
  - {{name: rm, kind: remote, url: "http://{up}/readyz", token: {s["remote"]}}}
"""


@pytest.fixture
async def unhealthy_web(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> TestServer:
    """A web server whose every path answers 503 (status JSON for the remote check)."""

    async def down(_: web.Request) -> web.Response:
        return web.json_response({"status": "unhealthy"}, status=503)

    app = web.Application()
    app.router.add_get("/{tail:.*}", down)
    return await aiohttp_server(app)


async def outputs(
    daemon: Daemon,
    exporter: InMemorySpanExporter,
    aiohttp_client: Callable[..., Awaitable[Client]],
    caplog: pytest.LogCaptureFixture,
) -> dict[str, str]:
    """Everything healthd says about its checks, after one fresh run of them all."""
    admin = await aiohttp_client(daemon.admin_app, headers=AUTH)
    probes = await aiohttp_client(daemon.app, headers=AUTH)
    found = {
        "spans": "\n".join(span.to_json() for span in exporter.get_finished_spans()),
        "/admin/state": await (await admin.get("/admin/state")).text(),
        "/health": await (await probes.get("/health")).text(),
        "/health?verbose": await (await probes.get("/health?verbose")).text(),
        "/metrics": await (await probes.get("/metrics")).text(),
        "log": caplog.text,
    }
    assert '"message": "' in found["/admin/state"]  # the messages are there, in full
    assert "healthd.check" in found["spans"]
    return found


def leaks(found: dict[str, str]) -> list[tuple[str, str]]:
    return [(where, name) for where, text in found.items()
            for name, secret in SECRETS.items() if secret in text]  # fmt: skip


def daemon_for(text: str) -> tuple[Daemon, InMemorySpanExporter]:
    settings = parse_settings(text)
    exporter = InMemorySpanExporter()
    telemetry = setup(settings, registry=CollectorRegistry(), env={},
                      span_processor=SimpleSpanProcessor(exporter))  # fmt: skip
    return Daemon(settings, telemetry=telemetry), exporter


async def test_secrets_appear_in_no_output(
    aiohttp_client: Callable[..., Awaitable[Client]],
    unhealthy_web: TestServer,
    refused_port: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After every check failed once, no secret is in a span, /admin/state, /health (with
    details and ?verbose), /metrics or the log."""
    assert unhealthy_web.port is not None
    daemon, exporter = daemon_for(config(refused_port, unhealthy_web.port))
    snapshot = await daemon.health.evaluate("health", Deadline.after(5.0), fresh=True)
    assert {c.name: c.status for c in snapshot.checks if c.kind != "loop"} == {
        name: Status.FAIL for name in ("pg", "my", "rd", "mq", "mt", "nt", "ht", "rm")
    }  # every error path ran
    assert leaks(await outputs(daemon, exporter, aiohttp_client, caplog)) == []


@pytest.mark.service("mysql")
@pytest.mark.service("amqp")
async def test_rejected_passwords_appear_in_no_output(
    aiohttp_client: Callable[..., Awaitable[Client]], caplog: pytest.LogCaptureFixture
) -> None:
    """Real servers refusing a wrong password: their errors reach no output with it."""
    s = SECRETS
    daemon, exporter = daemon_for(f"""
server: {{token: {s["token"]}}}
checks:
  - {{name: my, kind: mysql, dsn: "mysql://root:{s["mysql"]}@127.0.0.1:3306/test"}}
  - {{name: mq, kind: amqp, url: "amqp://guest:{s["amqp"]}@127.0.0.1:5672/"}}
""")
    snapshot = await daemon.health.evaluate("health", Deadline.after(5.0), fresh=True)
    failed = {c.name: (c.status, c.last.reason.value if c.last else None)
              for c in snapshot.checks if c.kind != "loop"}  # fmt: skip
    assert failed == {n: (Status.FAIL, "auth_failed") for n in ("my", "mq")}
    assert leaks(await outputs(daemon, exporter, aiohttp_client, caplog)) == []
