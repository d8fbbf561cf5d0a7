"""What a probe request may say (DESIGN §3, §5): budget headers and their precedence,
several `?exclude=`, and `Cache-Control: no-store` on every answer, /metrics and 404s too."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from healthd.model import Outcome
from healthd.observers import setup
from healthd.testing import FakeCheck, ManualClock
from healthd.web.probes import make_app
from tests.helpers import engine_with, run_now, serve, settings

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]
ENVOY = "x-envoy-expected-rq-timeout-ms"
# Every budget source at once, in DESIGN §3 order, each giving a different budget.
SOURCES = [
    ("?timeout", 0.1),
    ("X-Request-Timeout-Ms", 0.3),
    ("grpc-timeout", 0.4),
    ("X-Prometheus-Scrape-Timeout-Seconds", 0.5),  # 1.0 minus deadline.offset 500ms
    (ENVOY, 0.7),
]
HEADERS = {
    "X-Request-Timeout-Ms": "300",
    "grpc-timeout": "400m",
    "X-Prometheus-Scrape-Timeout-Seconds": "1.0",
    ENVOY: "700",
}


@pytest.mark.parametrize("mode", ["on_demand", "background"])
async def test_unparseable_envoy_timeout_is_400(aiohttp_client: MakeClient, mode: str) -> None:
    """A bad x-envoy-expected-rq-timeout-ms is a 400 with one line, on the cached path too."""
    engine = engine_with({"db": FakeCheck()}, settings([{"name": "db", "mode": mode}]))
    client = await serve(aiohttp_client, make_app(engine.views()))
    await run_now(engine, "db")
    assert (await client.get("/readyz")).status == 200  # background: the answer is now cached
    resp = await client.get("/readyz", headers={ENVOY: "soon"})
    assert resp.status == 400
    assert await resp.json() == {"error": f"{ENVOY}: 'soon' is not a number"}
    assert resp.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("first", range(len(SOURCES)), ids=[name for name, _ in SOURCES])
async def test_first_budget_source_wins(aiohttp_client: MakeClient, first: int) -> None:
    """With every source below `first` present too, the first one sets the check's budget
    (minus the 20 ms margin)."""
    clock = ManualClock()  # the budget a check sees is then exact
    fake = FakeCheck()
    engine = engine_with({"db": fake}, settings([{"name": "db", "mode": "on_demand"}]),
                         clock=clock)  # fmt: skip
    client = await serve(aiohttp_client, make_app(engine.views()))
    names = [name for name, _ in SOURCES[first:]]
    query = "?timeout=100ms" if "?timeout" in names else ""
    headers = {k: v for k, v in HEADERS.items() if k in names}
    assert (await client.get(f"/readyz{query}", headers=headers)).status == 200
    assert fake.deadlines == [pytest.approx(SOURCES[first][1] - 0.020)]


async def test_several_excludes(aiohttp_client: MakeClient) -> None:
    """`?exclude=a&exclude=b` leaves both out: neither runs, both print `excluded: ok`."""
    fakes = {"a": FakeCheck([Outcome.FAIL]), "b": FakeCheck([Outcome.FAIL]), "c": FakeCheck()}
    s = settings(
        [{"name": n, "mode": "on_demand"} for n in fakes], server={"show_details": "always"}
    )
    client = await serve(aiohttp_client, make_app(engine_with(fakes, s).views()))
    resp = await client.get("/readyz?verbose&exclude=a&exclude=b")
    assert resp.status == 200
    assert (await resp.text()).splitlines() == [
        "[+]c ok",
        "[+]a excluded: ok",
        "[+]b excluded: ok",
        "readyz check passed",
    ]
    body = await (await client.get("/readyz?exclude=a&exclude=b")).json()
    assert (body["status"], list(body["checks"]), body["excluded"]) == (
        "healthy",
        ["c"],
        ["a", "b"],
    )
    assert (fakes["a"].calls, fakes["b"].calls) == (0, 0)


@pytest.mark.parametrize(
    ("method", "path", "code"),
    [("GET", "/metrics", 200), ("GET", "/nope", 404), ("GET", "/readyz/nope", 404),
     ("GET", "/livez/db", 404), ("POST", "/readyz", 405), ("POST", "/metrics", 405)],
)  # fmt: skip
async def test_every_answer_is_no_store(
    aiohttp_client: MakeClient, method: str, path: str, code: int
) -> None:
    """/metrics, unknown paths and checks (404) and wrong methods (405) say no-store."""
    s = settings([{"name": "db", "mode": "on_demand"}])
    telemetry = setup(s, registry=CollectorRegistry(), env={})
    engine = engine_with({"db": FakeCheck()}, s, telemetry=telemetry)
    client = await serve(aiohttp_client, make_app(engine.views(), telemetry.routes))
    resp = await client.request(method, path)
    assert resp.status == code
    assert resp.headers["Cache-Control"] == "no-store"
