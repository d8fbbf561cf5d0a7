"""The probe listener over real HTTP (aiohttp test server on a free port)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from healthd.health import Health
from healthd.model import Outcome
from healthd.testing import FakeCheck, ManualClock
from healthd.web.probes import PROBES, make_app
from tests.helpers import engine_with, run_now, serve, settings

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]
TOKEN = "s3cret-token-value"


def fakes(**outcomes: Outcome) -> dict[str, FakeCheck]:
    return {name: FakeCheck([o], message=f"{name} says {o.value}") for name, o in outcomes.items()}


async def client_for(aiohttp_client: MakeClient, engine: Health, **kwargs: Any) -> Client:
    return await serve(aiohttp_client, make_app(engine.views()), **kwargs)


def on_demand(*names: str, **extra: Any) -> list[dict[str, Any]]:
    return [{"name": n, "mode": "on_demand", **extra} for n in names]


@pytest.fixture
def server_cfg() -> dict[str, Any]:
    return {"server": {"token": TOKEN}}


async def test_readyz_healthy(aiohttp_client: MakeClient, server_cfg: dict[str, Any]) -> None:
    """All passing: 200, status only without a token, and Cache-Control: no-store."""
    engine = engine_with(fakes(db=Outcome.PASS), settings(on_demand("db"), **server_cfg))
    client = await client_for(aiohttp_client, engine)
    resp = await client.get("/readyz")
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    assert await resp.json() == {"status": "healthy"}


async def test_details_need_the_token(
    aiohttp_client: MakeClient, server_cfg: dict[str, Any]
) -> None:
    """With a valid bearer token the body carries every check; a wrong one gets status only."""
    engine = engine_with(fakes(db=Outcome.PASS), settings(on_demand("db"), **server_cfg))
    client = await client_for(aiohttp_client, engine)
    wrong = await client.get("/readyz", headers={"Authorization": "Bearer nope"})
    assert await wrong.json() == {"status": "healthy"}
    right = await client.get("/readyz", headers={"Authorization": f"Bearer {TOKEN}"})
    body = await right.json()
    assert body["group"] == "readiness"
    assert body["checks"]["db"]["status"] == "pass"
    assert body["checks"]["db"]["message"] == "db says pass"
    assert body["checks"]["db"]["last_outcome"] == "pass"
    assert {"deadline_ms", "elapsed_ms", "draining"} <= body.keys()


async def test_critical_failure_is_503(aiohttp_client: MakeClient) -> None:
    """A failing critical check makes readiness 503 and unhealthy."""
    s = settings(on_demand("db", "cache"), server={"show_details": "always"})
    engine = engine_with(fakes(db=Outcome.FAIL, cache=Outcome.PASS), s)
    client = await client_for(aiohttp_client, engine)
    resp = await client.get("/readyz")
    assert resp.status == 503
    body = await resp.json()
    assert body["status"] == "unhealthy"
    assert body["checks"]["db"]["reason"] == "unhealthy"


async def test_noncritical_failure_is_degraded_200(aiohttp_client: MakeClient) -> None:
    """A failing non-critical check degrades but stays ready (200)."""
    s = settings([*on_demand("db"), *on_demand("cache", critical=False)])
    engine = engine_with(fakes(db=Outcome.PASS, cache=Outcome.FAIL), s)
    client = await client_for(aiohttp_client, engine)
    resp = await client.get("/readyz")
    assert (resp.status, await resp.json()) == (200, {"status": "degraded"})


async def test_verbose_lines(aiohttp_client: MakeClient) -> None:
    """?verbose prints one line a check in the kube-apiserver style, excluded ones too."""
    s = settings(on_demand("db", "cache", "queue"), server={"show_details": "always"})
    engine = engine_with(fakes(db=Outcome.PASS, cache=Outcome.FAIL, queue=Outcome.FAIL), s)
    client = await client_for(aiohttp_client, engine)
    resp = await client.get("/readyz?verbose&exclude=queue")
    text = await resp.text()
    assert resp.status == 503
    assert text.splitlines() == [
        "[+]db ok",
        "[-]cache failed: cache says fail",
        "[+]queue excluded: ok",
        "readyz check failed",
    ]


async def test_verbose_withholds_checks_without_authority(aiohttp_client: MakeClient) -> None:
    """Without authority ?verbose shows neither check names nor messages (names are
    details, as in the JSON body): one line says how to see them, then the verdict."""
    engine = engine_with(fakes(cache=Outcome.FAIL), settings(on_demand("cache")))
    client = await client_for(aiohttp_client, engine)
    text = await (await client.get("/readyz?verbose")).text()
    assert text.splitlines() == [
        "checks withheld: send the bearer token to see them (server.show_details)",
        "readyz check failed",
    ]


async def test_single_check_path(aiohttp_client: MakeClient) -> None:
    """/readyz/{check} answers for that check alone; unknown names are 404."""
    s = settings(on_demand("db", "cache"))
    engine = engine_with(fakes(db=Outcome.PASS, cache=Outcome.FAIL), s)
    client = await client_for(aiohttp_client, engine)
    assert (await client.get("/readyz/db")).status == 200
    assert (await client.get("/readyz/cache")).status == 503
    missing = await client.get("/readyz/nope")
    assert missing.status == 404
    assert "nope" in (await missing.json())["error"]
    assert (await client.get("/livez/db")).status == 404  # db is not a liveness check


async def test_health_json_ietf_shape(aiohttp_client: MakeClient) -> None:
    """Accept: application/health+json gives the IETF draft shape with pass/warn/fail."""
    loop = {"name": "loop", "kind": "loop", "mode": "on_demand"}
    s = settings([*on_demand("db"), loop], server={"show_details": "always"})
    engine = engine_with(fakes(db=Outcome.WARN, loop=Outcome.PASS), s)
    client = await client_for(aiohttp_client, engine)
    resp = await client.get("/health", headers={"Accept": "application/health+json"})
    assert resp.content_type == "application/health+json"
    body = json.loads(await resp.read())
    assert body["status"] == "warn"
    assert body["checks"]["db:responseTime"][0]["status"] == "warn"


async def test_health_lists_groups(aiohttp_client: MakeClient) -> None:
    """/health shows every check and the state of each group."""
    s = settings(on_demand("db"), server={"show_details": "always"})
    engine = engine_with(fakes(db=Outcome.PASS), s)
    client = await client_for(aiohttp_client, engine)
    body = await (await client.get("/health")).json()
    assert set(body["groups"]) == {"readiness", "liveness", "startup"}
    assert "db" in body["checks"]


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ("?timeout=soon", {}),
        ("", {"X-Request-Timeout-Ms": "abc"}),
        ("", {"grpc-timeout": "forever"}),
        ("", {"X-Prometheus-Scrape-Timeout-Seconds": "x"}),
    ],
)
async def test_bad_budget_is_400(
    aiohttp_client: MakeClient, query: str, headers: dict[str, str]
) -> None:
    """An unparseable budget is a 400 with a message, never a 500."""
    engine = engine_with(fakes(db=Outcome.PASS), settings(on_demand("db")))
    client = await client_for(aiohttp_client, engine)
    resp = await client.get(f"/readyz{query}", headers=headers)
    assert resp.status == 400
    assert (await resp.json())["error"]
    assert resp.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "framing",
    [b"Content-Length: 102400\r\n\r\n" + b"x" * 102400,
     b"Transfer-Encoding: chunked\r\n\r\n19000\r\n" + b"x" * 102400 + b"\r\n0\r\n\r\n"],
    ids=["sized", "chunked"],
)  # fmt: skip
async def test_probe_bodies_are_never_read(aiohttp_client: MakeClient, framing: bytes) -> None:
    """A GET /readyz carrying 100 KiB is answered as one without, and its connection serves
    the next request: no probe route reads a body, so the probe listener's 64 KiB limit never
    applies (it binds where a body is read: the admin API, tests/test_admin.py)."""
    engine = engine_with(fakes(db=Outcome.PASS), settings(on_demand("db")))
    client = await client_for(aiohttp_client, engine)
    assert client.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(b"GET /readyz HTTP/1.1\r\nHost: h\r\n" + framing)
    writer.write(b"GET /readyz HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    async with asyncio.timeout(5.0):
        answers = await reader.read()  # until the server closes after the second answer
    writer.close()
    await writer.wait_closed()
    assert answers.count(b"HTTP/1.1 200 OK\r\n") == 2
    assert answers.count(b'{"status":"healthy"}') == 2


async def test_draining_readiness_503_liveness_200(aiohttp_client: MakeClient) -> None:
    """Draining: readiness 503 with state draining, liveness still 200."""
    s = settings([{"name": "loop", "kind": "loop", "mode": "on_demand"}, *on_demand("db")])
    engine = engine_with(fakes(db=Outcome.PASS), s)
    engine.drain()
    client = await client_for(aiohttp_client, engine)
    ready = await client.get("/readyz")
    assert (ready.status, await ready.json()) == (503, {"status": "draining"})
    assert (await client.get("/livez")).status == 200


async def test_startupz_latches(aiohttp_client: MakeClient) -> None:
    """/startupz is 503 until every critical check passed once, then 200 for good."""
    s = settings(on_demand("db"))
    fake = FakeCheck([Outcome.FAIL, Outcome.PASS, Outcome.FAIL])
    client = await client_for(aiohttp_client, engine_with({"db": fake}, s))
    assert (await client.get("/startupz")).status == 503  # db runs: fail
    assert (await client.get("/startupz")).status == 200  # db runs: pass, the latch closes
    assert (await client.get("/readyz")).status == 503  # db runs: fail again
    assert (await client.get("/startupz")).status == 200  # still started


async def test_a_latched_startup_says_passed_while_draining(aiohttp_client: MakeClient) -> None:
    """Draining shows in readiness, never in a latched /startupz: its verbose answer says
    passed and has no line that contradicts it; /readyz?verbose names the drain."""
    s = settings(on_demand("db"))
    engine = engine_with(fakes(db=Outcome.PASS), s)
    client = await client_for(aiohttp_client, engine)
    assert (await client.get("/startupz")).status == 200  # the latch closes
    engine.drain()
    started = await client.get("/startupz?verbose")
    assert started.status == 200
    text = await started.text()
    assert text.endswith("\nstartupz check passed\n"), text
    assert "draining" not in text
    ready = await client.get("/readyz?verbose")
    assert ready.status == 503
    assert "[-]draining: this instance is shutting down" in await ready.text()


async def test_status_codes_configurable(aiohttp_client: MakeClient) -> None:
    """server.status_codes maps states to HTTP codes (e.g. degraded → 299)."""
    s = settings(on_demand("db", critical=False), server={"status_codes": {"degraded": 299}})
    engine = engine_with(fakes(db=Outcome.FAIL), s)
    client = await client_for(aiohttp_client, engine)
    assert (await client.get("/readyz")).status == 299


async def test_budget_reaches_the_check(aiohttp_client: MakeClient) -> None:
    """A check sees min(its timeout, caller budget - margin) as its deadline."""
    fake = FakeCheck()
    client = await client_for(aiohttp_client, engine_with({"db": fake}, settings(on_demand("db"))))
    await client.get("/readyz?timeout=300ms")
    assert 0.2 < fake.deadlines[-1] <= 0.28
    await client.get("/readyz", headers={"X-Request-Timeout-Ms": "5000"})
    assert 0.9 < fake.deadlines[-1] <= 1.0  # capped by the check's own 1s timeout


async def test_cached_answer_follows_results(aiohttp_client: MakeClient) -> None:
    """A status-only /readyz served from cache changes as soon as a new result lands."""
    fake = FakeCheck([Outcome.PASS, Outcome.FAIL])
    engine = engine_with({"db": fake}, settings([{"name": "db"}]))
    client = await client_for(aiohttp_client, engine)
    await run_now(engine, "db")
    assert (await client.get("/readyz")).status == 200
    assert (await client.get("/readyz")).status == 200  # from the cache
    await run_now(engine, "db")  # fail
    resp = await client.get("/readyz", headers={"Accept": "*/*"})
    assert (resp.status, await resp.json()) == (503, {"status": "unhealthy"})
    assert resp.headers["Cache-Control"] == "no-store"


async def test_cached_answer_skips_router_and_evaluation(aiohttp_client: MakeClient) -> None:
    """The hot path is the front (`probes.front`): a status-only /readyz is answered without
    routing or an evaluation; with a query, a token or a new budget header it takes the
    long way, and both ways give the same bytes."""
    engine = engine_with({"db": FakeCheck()}, settings([{"name": "db"}], server={"token": TOKEN}))
    client = await client_for(aiohttp_client, engine)
    await run_now(engine, "db")
    calls: list[str] = []
    front = client.app[PROBES]
    evaluate = front.views.evaluate

    async def counted(group: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(group)
        return await evaluate(group, *args, **kwargs)

    front.views = dataclasses.replace(front.views, evaluate=counted)
    fast = [await client.get("/readyz", headers={"X-Request-Timeout-Ms": "900"})]
    fast += [await client.get("/readyz") for _ in range(5)]
    assert calls == [readiness := "readiness"]  # the first 900 ms was parsed the long way
    slow = await client.get("/readyz?fresh=0")
    await client.get("/readyz", headers={"Authorization": f"Bearer {TOKEN}"})
    await client.get("/readyz", headers={"X-Request-Timeout-Ms": "800"})  # new: parsed
    assert calls == [readiness] * 4
    for resp in [*fast, slow]:
        assert (resp.status, await resp.read()) == (200, b'{"status":"healthy"}')
        assert resp.headers["Content-Type"] == "application/json"
        assert resp.headers["Cache-Control"] == "no-store"


async def test_cached_answer_expires_with_max_age(aiohttp_client: MakeClient) -> None:
    """A cached answer is not served once a member's result is older than its max_age."""
    clock = ManualClock()
    s = settings([{"name": "db", "interval": "10s", "max_age": "30s"}])
    engine = engine_with({"db": FakeCheck()}, s, clock=clock)
    client = await client_for(aiohttp_client, engine)
    await run_now(engine, "db")
    assert (await client.get("/readyz")).status == 200
    clock.advance(29.0)
    assert (await client.get("/readyz")).status == 200
    clock.advance(2.0)
    resp = await client.get("/readyz")
    assert (resp.status, await resp.json()) == (503, {"status": "unknown"})


async def test_cache_never_hides_details_or_budget_errors(aiohttp_client: MakeClient) -> None:
    """After a cached answer, a token still gets details and a bad budget still gets 400."""
    engine = engine_with({"db": FakeCheck()}, settings([{"name": "db"}], server={"token": TOKEN}))
    client = await client_for(aiohttp_client, engine)
    await run_now(engine, "db")
    assert await (await client.get("/readyz")).json() == {"status": "healthy"}
    detailed = await client.get("/readyz", headers={"Authorization": f"Bearer {TOKEN}"})
    assert "checks" in await detailed.json()
    bad = await client.get("/readyz", headers={"X-Request-Timeout-Ms": "soon"})
    assert bad.status == 400


@pytest.mark.parametrize(
    ("query", "runs"),
    [("?fresh", 2), ("?fresh=1", 2), ("?fresh=TRUE", 2), ("?fresh=yes", 2),
     ("?fresh=0", 1), ("?fresh=False", 1), ("?fresh=no", 1)],
)  # fmt: skip
async def test_fresh_runs_background_checks_now(
    aiohttp_client: MakeClient, query: str, runs: int
) -> None:
    """`?fresh` (bare, 1, true, yes) runs a background check inside the request; 0/false/no
    do not."""
    fake = FakeCheck()
    engine = engine_with({"db": fake}, settings([{"name": "db"}]))
    client = await client_for(aiohttp_client, engine)
    await run_now(engine, "db")
    assert (await client.get(f"/readyz{query}")).status == 200
    assert fake.calls == runs


@pytest.mark.parametrize("value", ["maybe", "2", "on"])
async def test_fresh_that_is_not_a_boolean_is_400(aiohttp_client: MakeClient, value: str) -> None:
    """`?fresh=maybe` is a 400 with a one-line message, and runs nothing."""
    fake = FakeCheck()
    engine = engine_with({"db": fake}, settings([{"name": "db"}]))
    client = await client_for(aiohttp_client, engine)
    await run_now(engine, "db")
    assert (await client.get("/readyz")).status == 200  # the cached answer is in place
    resp = await client.get(f"/readyz?fresh={value}")
    assert resp.status == 400
    assert await resp.json() == {"error": f"?fresh: {value!r} is not a boolean (use 1 or 0)"}
    assert resp.headers["Cache-Control"] == "no-store"
    assert fake.calls == 1


async def test_a_reload_to_on_demand_leaves_the_cached_path(aiohttp_client: MakeClient) -> None:
    """A check reloaded from background to on_demand is run by the next /readyz."""
    fake = FakeCheck()
    engine = engine_with({"db": fake}, settings([{"name": "db"}]))
    client = await client_for(aiohttp_client, engine)
    await run_now(engine, "db")
    assert (await client.get("/readyz")).status == 200
    assert fake.calls == 1  # answered from the store
    await engine.reload(settings([{"name": "db", "mode": "on_demand"}]))
    assert (await client.get("/readyz")).status == 200
    assert fake.calls == 2  # the probe ran it
    await engine.stop()


async def test_daemon_serves_the_hot_path_in_front(unused_tcp_port: int) -> None:
    """`healthd run`'s listener has the front too: cached answers take no evaluation."""
    from healthd.config import parse_settings
    from healthd.lifecycle import Daemon
    from healthd.observers import Telemetry

    s = parse_settings(
        f'server: {{listen: "127.0.0.1:{unused_tcp_port}"}}\n'
        "shutdown: {drain_delay: 0s, grace: 1s}\n"
        "checks:\n  - {name: up, kind: loop, interval: 1s, timeout: 500ms}\n"
    )
    daemon = Daemon(s, telemetry=Telemetry())
    serving = asyncio.create_task(daemon.serve())
    calls: list[str] = []
    front = daemon.app[PROBES]
    evaluate = front.views.evaluate

    async def counted(group: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(group)
        return await evaluate(group, *args, **kwargs)

    front.views = dataclasses.replace(front.views, evaluate=counted)
    url = f"http://127.0.0.1:{unused_tcp_port}/readyz"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(250):  # until listening and the first runs are in: polled
                try:
                    async with session.get(url + "?fresh=0") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.02)
            before = len(calls)
            for _ in range(10):
                async with session.get(url) as resp:
                    assert resp.status == 200
            assert len(calls) == before  # answered by the front
            async with session.get(url + "?fresh=0") as resp:
                assert resp.status == 200
            assert len(calls) == before + 1  # a query takes the long way
    finally:
        daemon.request_stop("test")
        assert await asyncio.wait_for(serving, 10) == 0
