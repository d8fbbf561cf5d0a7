"""/status (rendered HTML, pure and over HTTP) and the per-check history behind it."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from html.parser import HTMLParser

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from healthd.errors import ConfigError
from healthd.health import Health
from healthd.model import CheckResult, CheckState, Outcome, PastRun, Reason, State, Status
from healthd.web.probes import make_app
from healthd.web.status import STRIP, CheckRow, Page, availability, render_page
from tests.helpers import result, settings

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]
TOKEN = "status-token-5678"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
NASTY = "<script>alert('x')</script> & \"quoted\""


def page(checks: list[CheckRow] | None) -> str:
    groups = {"readiness": State.UNHEALTHY, "liveness": State.HEALTHY, "startup": State.HEALTHY,
              "health": State.UNHEALTHY}  # fmt: skip
    view = Page(groups, False, checks, "pod-1", time.time(), 100)
    return render_page(view, "/* css */", "/* js */")


def row(name: str, outcomes: list[Outcome], message: str = "ok") -> CheckRow:
    results = [result(name, o, message) for o in outcomes]
    status = Status(outcomes[-1].value)
    state = CheckState(name, "tcp", True, status, results[-1])
    return CheckRow.of(state, [PastRun.of(r) for r in results], time.time() - 300)


def strip(html: str) -> str:
    """The first check's strip."""
    found = re.search(r'<div class="strip"[^>]*>(.*?)</div>', html)
    assert found is not None
    return found.group(1)


class Assets(HTMLParser):
    """Every URL the document would fetch (src, href of stylesheets and icons)."""

    def __init__(self) -> None:
        super().__init__()
        self.fetches: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("src"):
            self.fetches.append(values["src"] or "")
        if tag == "link" and values.get("href"):
            self.fetches.append(values["href"] or "")
        if tag == "a" and values.get("href"):
            self.links.append(values["href"] or "")


def test_every_message_is_escaped() -> None:
    """A message (or any text from a check) cannot inject markup into the page."""
    html = page([row("db", [Outcome.FAIL], NASTY)])
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;quoted&quot;" in html


def test_no_external_assets() -> None:
    """The page fetches nothing: its CSS and JavaScript are inline, its links relative."""
    html = page([row("db", [Outcome.PASS])])
    parser = Assets()
    parser.feed(html)
    assert parser.fetches == []
    assert all(not re.match(r"^[a-z]+:|^//", link) for link in parser.links), parser.links
    assert "http://" not in html
    assert "https://" not in html
    assert "<style>/* css */</style>" in html
    assert "<script>/* js */</script>" in html


def test_a_strip_of_the_last_60_results_coloured_by_outcome() -> None:
    """Oldest on the left, padded to 60 cells; each result says its outcome and duration."""
    outcomes = [Outcome.PASS] * 70 + [Outcome.WARN, Outcome.FAIL, Outcome.TIMEOUT]
    html = strip(page([row("db", outcomes)]))
    cells = re.findall(r'<i class="r r-(\w+)"( title="[^"]*")?>', html)
    assert len(cells) == STRIP
    assert [c[0] for c in cells[-3:]] == ["warn", "fail", "timeout"]
    assert 'title="timeout · 2.0 ms · ' in html
    assert re.search(r'title="pass · 2.0 ms · \d\d:\d\d:\d\dZ"', html)
    short = strip(page([row("db", [Outcome.PASS, Outcome.FAIL])]))
    cells = re.findall(r'<i class="r r-(\w+)"', short)
    assert cells == ["none"] * (STRIP - 2) + ["pass", "fail"]


def test_availability_over_the_kept_history() -> None:
    """Passes and warns count as available; skipped runs do not count either way."""
    results = [result("db", o) for o in (Outcome.PASS, Outcome.WARN, Outcome.PASS, Outcome.FAIL)]
    skipped = CheckResult(
        "db", "tcp", Outcome.FAIL, Reason.SKIPPED, "skipped", 0, 0, 0, 1, attempts=0
    )
    kept = [PastRun.of(r) for r in (*results, skipped)]
    assert availability(kept) == 0.75
    assert availability(kept[-1:]) is None
    assert ">75%<" in page([row("db", [Outcome.PASS, Outcome.WARN, Outcome.PASS, Outcome.FAIL])])


def test_without_details_only_the_groups() -> None:
    """No check name, message or strip when details are not allowed."""
    html = page(None)
    assert 'id="group-readiness"' in html
    assert "unhealthy" in html
    assert "<article" not in html
    assert "server.show_details" in html


def quiet(**server: object) -> Health:
    checks = [
        {"name": n, "interval": "1h", "timeout": "1s", "flapping": "off"} for n in ("db", "cache")
    ]
    return Health(settings=settings(checks, server=server))


async def test_status_over_http(aiohttp_client: MakeClient) -> None:
    """/status: HTML, no-store, a strict CSP; check details only with the token."""
    engine = quiet(token=TOKEN)
    db = engine.store.spec("db")
    assert db is not None
    engine.store.record(db, result("db", Outcome.FAIL, NASTY))
    client = await aiohttp_client(make_app(engine.views()))
    anonymous = await client.get("/status")
    assert anonymous.status == 200
    assert anonymous.content_type == "text/html"
    assert anonymous.headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in anonymous.headers["Content-Security-Policy"]
    text = await anonymous.text()
    assert 'id="group-readiness"' in text
    assert 'id="check-db"' not in text
    assert "alert" not in text
    authorised = await (await client.get("/status", headers=BEARER)).text()
    assert 'id="check-db"' in authorised
    assert 'id="check-cache"' in authorised
    assert "&lt;script&gt;alert" in authorised
    assert "<script>alert" not in authorised


def test_the_store_keeps_the_last_history_results_per_check() -> None:
    """A bounded deque per check: the newest `history` results, oldest first; a reload
    with another size keeps the newest; 0 keeps none."""
    engine = Health(settings=settings([{"name": "db", "flapping": "off"}], history=5))
    spec = engine.store.spec("db")
    assert spec is not None
    for i in range(8):
        engine.store.record(spec, result("db", Outcome.PASS, f"run {i}"))
    assert [r.message for r in engine.store.history("db")] == [f"run {i}" for i in range(3, 8)]
    assert [r.message for r in engine.store.history("db", 2)] == ["run 6", "run 7"]
    assert engine.store.history("db", 0) == []
    assert engine.store.history("nope") == []
    engine.store.configure(engine.store.specs(), engine.settings.membership(), history=3)
    assert [r.message for r in engine.store.history("db")] == ["run 5", "run 6", "run 7"]
    engine.store.configure(engine.store.specs(), engine.settings.membership(), history=0)
    engine.store.record(spec, result("db", Outcome.PASS))
    assert engine.store.history("db") == []


def test_a_kept_result_shares_the_message_of_the_one_before() -> None:
    """The same message run after run is held once (a steady check costs its floats)."""
    engine = Health(settings=settings([{"name": "db"}]))
    spec = engine.store.spec("db")
    assert spec is not None
    for _ in range(3):
        engine.store.record(spec, result("db", Outcome.PASS, "".join(["connected to ", "x"])))
    first, second, third = engine.store.history("db")
    assert first.message is second.message is third.message


def test_since_is_the_last_status_change() -> None:
    """The store remembers when each check's status last changed (the page's "for 5m")."""
    engine = Health(settings=settings([{"name": "db", "flapping": "off"}]))
    spec = engine.store.spec("db")
    assert spec is not None
    assert engine.store.since("db") is None
    engine.store.record(spec, result("db", Outcome.PASS))
    first = engine.store.since("db")
    assert first is not None
    engine.store.record(spec, result("db", Outcome.PASS))
    assert engine.store.since("db") == first
    engine.store.record(spec, result("db", Outcome.FAIL))
    changed = engine.store.since("db")
    assert changed is not None
    assert changed >= first


def test_history_is_a_checked_config_key() -> None:
    """`history:` is top-level, 100 by default, 0 to 10,000."""
    assert settings([]).history == 100
    with pytest.raises(ConfigError, match="history"):
        settings([], history=-1)
    with pytest.raises(ConfigError, match="history"):
        settings([], history="lots")


async def test_health_history_query(aiohttp_client: MakeClient) -> None:
    """`/health?history=N` adds each check's last N results; a bare `?history` all kept;
    a bad N is a 400; without the token, status only."""
    engine = quiet(token=TOKEN)
    spec = engine.store.spec("db")
    assert spec is not None
    for i in range(4):
        engine.store.record(spec, result("db", Outcome.PASS if i % 2 else Outcome.FAIL, f"r{i}"))
    client = await aiohttp_client(make_app(engine.views()))
    body = await (await client.get("/health?history=2", headers=BEARER)).json()
    entries = body["checks"]["db"]["history"]
    assert [e["message"] for e in entries] == ["r2", "r3"]
    assert entries[0] == {
        "outcome": "fail", "reason": "refused", "message": "r2", "duration_ms": 2.0,
        "observed_at": entries[0]["observed_at"],
    }  # fmt: skip
    assert entries[0]["observed_at"].endswith("Z")
    assert body["checks"]["cache"]["history"] == []
    everything = await (await client.get("/health?history", headers=BEARER)).json()
    assert len(everything["checks"]["db"]["history"]) == 4
    plain = await (await client.get("/health", headers=BEARER)).json()
    assert "history" not in plain["checks"]["db"]
    for bad in ("abc", "-1", "2.5", "1" * 30, "99999999"):
        r = await client.get(f"/health?history={bad}", headers=BEARER)
        assert r.status == 400, bad
        assert "?history" in (await r.json())["error"]
    anonymous = await client.get("/health?history=2")
    assert list(await anonymous.json()) == ["status"]


async def test_a_big_page_is_rendered_off_the_event_loop(
    aiohttp_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above 50 checks the page is rendered in its own thread (the loop keeps answering
    probes meanwhile); every check is still on it."""
    import threading

    from healthd.web import status

    threads: list[str] = []
    original = status.render_page

    def spy(page: Page, css: str, js: str) -> str:
        threads.append(threading.current_thread().name)
        return original(page, css, js)

    monkeypatch.setattr(status, "render_page", spy)
    names = [f"c{i}" for i in range(60)]
    checks = [{"name": n, "interval": "1h", "timeout": "1s"} for n in names]
    engine = Health(settings=settings(checks, server={"show_details": "always"}))
    client = await aiohttp_client(make_app(engine.views()))
    text = await (await client.get("/status")).text()
    assert all(f'id="check-{n}"' in text for n in names)
    assert threads[-1].startswith("healthd-status")
    small = Health(settings=settings([{"name": "db"}], server={"show_details": "always"}))
    client = await aiohttp_client(make_app(small.views()))
    await client.get("/status")
    assert threads[-1] == threading.main_thread().name
