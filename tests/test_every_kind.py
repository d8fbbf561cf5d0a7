"""`healthd check --json` against real servers: one check of every kind passes, exit 0."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiohttp import web
from grpc_health.v1 import health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from healthd.checks import KINDS, SPECS
from tests.conftest import SERVICES
from tests.procs import Healthd

pytestmark = [pytest.mark.slow, *(pytest.mark.service(name) for name in SERVICES)]

# heartbeat is fed by the application through the admin API, and process watches the child
# of `healthd run -- CMD`: a one-shot `healthd check` has no application posting to it and
# no child, so they cannot pass there by design (tests/test_supervise.py runs process).
ONE_SHOT_KINDS = set(KINDS) - {"heartbeat", "process"}


def every_kind(http_port: int, grpc_port: int, remote: str) -> str:
    """A config with one check of each one-shot kind, from each kind's own `example`."""
    servers = {
        "{http}": f"127.0.0.1:{http_port}",
        "{grpc}": f"127.0.0.1:{grpc_port}",
        "{remote}": remote.removeprefix("http://").rstrip("/"),
    }
    specs = []
    for kind in sorted(ONE_SHOT_KINDS):
        text = json.dumps({"name": kind, "kind": kind, **SPECS[kind].example})
        for placeholder, address in servers.items():
            text = text.replace(placeholder, address)
        specs.append(json.loads(text))
    return json.dumps({"checks": specs})


def test_every_kind_has_an_example_that_validates() -> None:
    """Each kind of the union carries an example of one passing check, and it builds: a
    new kind is one module and one line in the union, and this test finds it there."""
    assert len(set(KINDS)) == len(KINDS) == len(SPECS)
    for kind, spec in SPECS.items():
        required = {n for n, f in spec.model_fields.items() if f.is_required()} - {"name"}
        assert required <= set(spec.example), f"{kind}: its example lacks {required}"
        text = json.dumps({"name": kind, "kind": kind, **spec.example})
        text = text.replace("{http}", "127.0.0.1:1").replace("{grpc}", "127.0.0.1:1")
        built = SPECS[kind].model_validate_json(text.replace("{remote}", "127.0.0.1:1"))
        assert built.kind == kind
        assert callable(built.build())


async def check(config: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "healthd", "check", "-c", str(config), "--json", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, json.loads(out or b"{}"), err.decode()


async def test_one_check_of_every_kind_passes(tmp_path: Path) -> None:
    """Every kind against its real server (gRPC, HTTP and a remote healthd in-process or local)."""
    grpc_server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health_aio.HealthServicer(), grpc_server)
    grpc_port = grpc_server.add_insecure_port("127.0.0.1:0")
    await grpc_server.start()

    async def green(_: web.Request) -> web.Response:
        return web.json_response({"status": "green"})

    app = web.Application()
    app.router.add_get("/healthz", green)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    http_port = runner.addresses[0][1]
    remote_cfg = "server: {listen: '127.0.0.1:{port}'}\nchecks:\n"
    remote_cfg += "  - {name: loop, kind: loop, mode: on_demand}\n"  # ready from the first probe
    try:
        async with Healthd(tmp_path, remote_cfg, "remote") as remote:
            config = tmp_path / "every-kind.yaml"
            config.write_text(every_kind(http_port, grpc_port, remote.url("")))
            code, body, err = await check(config, "--timeout", "5s")
    finally:
        await runner.cleanup()
        await grpc_server.stop(None)
    assert {c["kind"] for c in body["checks"].values()} == ONE_SHOT_KINDS
    failing = {n: c["message"] for n, c in body["checks"].items() if c["status"] != "pass"}
    assert not failing, failing
    assert (code, body["status"]) == (0, "healthy"), err


async def test_pg_sleep_past_the_timeout_exits_2(tmp_path: Path) -> None:
    """SELECT pg_sleep(5) with timeout 300ms: outcome timeout and `healthd check` exits 2."""
    config = tmp_path / "sleepy.yaml"
    config.write_text(
        "checks:\n  - {name: db, kind: postgres, timeout: 300ms,\n"
        "      dsn: 'postgresql://postgres@127.0.0.1:5432/test', query: 'SELECT pg_sleep(5)'}\n"
    )
    code, body, err = await check(config)
    assert code == 2, err
    db = body["checks"]["db"]
    assert (db["status"], db["last_outcome"]) == ("timeout", "timeout")
    assert 280 <= db["duration_ms"] <= 600
