"""`GET /status`: a page for people (reference §12), rendered on the server from the store.

One HTML document with its CSS and JavaScript inline (status.css, status.js beside this
module): no external asset, so it works in an air-gapped cluster. It shows each group's
state and, where the probe bodies would show details (`Answers.details`), each check's
status, message, last duration, time since its last transition, a strip of its last 60
results coloured by outcome (the duration on hover) and its availability over the kept
history. Readable without JavaScript (and it reloads itself then, every 10 s); with it,
`/watch` updates the page as transitions happen. Every name and message is escaped.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from html import escape
from pathlib import Path

from aiohttp import web

import healthd
from healthd.groups import GROUPS, HEALTH
from healthd.model import CheckState, Outcome, PastRun, State
from healthd.store import Store
from healthd.web import render
from healthd.web.base import InFlight

STRIP = 60  # results in a check's strip
THREAD_ABOVE = 50  # checks on a page above which it is rendered off the event loop
HERE = Path(__file__).parent
GROUP_HELP = {
    "readiness": "may take traffic (/readyz)",
    "liveness": "healthd itself (/livez)",
    "startup": "has started (/startupz)",
    "health": "every check (/health)",
}


@dataclass(frozen=True, slots=True)
class CheckRow:
    """One check as the page shows it."""

    state: CheckState
    results: Sequence[PastRun]  # the strip's: oldest first, at most STRIP
    since: float | None  # wall time of its last status change
    available: float | None  # availability over the kept history (None: no runs)
    runs: int  # runs in the kept history (skipped ones aside)

    @classmethod
    def of(cls, state: CheckState, kept: Sequence[PastRun], since: float | None) -> CheckRow:
        runs = sum(not r.skipped for r in kept)
        return cls(state, list(kept)[-STRIP:], since, availability(kept), runs)


@dataclass(frozen=True, slots=True)
class Page:
    """Everything one rendering needs: pure data, so `render_page` is a plain function."""

    groups: dict[str, State]
    draining: bool
    checks: Sequence[CheckRow] | None  # None: details not allowed for this caller
    host: str
    now: float  # wall clock
    history: int  # results kept per check


def availability(results: Sequence[PastRun]) -> float | None:
    """The share of runs that passed or warned (skipped runs do not count either way)."""
    runs = [r for r in results if not r.skipped]
    if not runs:
        return None
    return sum(r.outcome.good for r in runs) / len(runs)


def age(seconds: float) -> str:
    """`12s`, `5m 3s`, `2h 5m`, `3d 4h` (status.js writes the same as the page stays open)."""
    s = max(0, int(seconds))
    for unit, size, sub, subsize in (
        ("d", 86400, "h", 3600),
        ("h", 3600, "m", 60),
        ("m", 60, "s", 1),
    ):
        if s >= size:
            rest = (s % size) // subsize
            return f"{s // size}{unit}" + (f" {rest}{sub}" if rest else "")
    return f"{s}s"


def _outcome(result: PastRun) -> str:
    return "skipped" if result.skipped else result.outcome.value


def _ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"


def _clock(wall: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(wall)) + "Z"


def _strip(results: Sequence[PastRun]) -> str:
    recent = list(results)[-STRIP:]
    cells = ['<i class="r r-none"></i>'] * (STRIP - len(recent))
    for r in recent:
        outcome = _outcome(r)
        title = f"{outcome} · {_ms(r.duration)} · {_clock(r.observed_at)}"
        if r.outcome is not Outcome.PASS:  # a pass's message says nothing new
            note = r.message if len(r.message) <= 120 else r.message[:119] + "…"
            title = escape(f"{title} · {note}")
        cells.append(f'<i class="r r-{outcome}" title="{title}"></i>')
    return "".join(cells)


def _check(row: CheckRow, now: float, history: int) -> str:
    state, last = row.state, row.state.last
    name, status = escape(state.name), state.status.value
    share, runs = row.available, row.runs
    avail = "—" if share is None else f"{share * 100:.1f}%".replace(".0%", "%")
    facts = []
    if last is not None:
        facts.append(f'<span title="the last run">{_ms(last.duration)}</span>')
    if row.since is not None:
        ago = age(now - row.since)
        facts.append(
            f'<span>{escape(status)} for <time data-at="{row.since:.3f}" '
            f'datetime="{render.iso(row.since)}">{ago}</time></span>'
        )
    if state.flapping:
        facts.append('<span class="tag tag-warn">flapping</span>')
    tags = f'<span class="tag">{escape(state.kind)}</span>'
    tags += "" if state.critical else '<span class="tag" title="not critical">optional</span>'
    return f"""<article class="check s-{status}" id="check-{name}" data-name="{name}">
<header><span class="dot"></span><h3>{name}</h3>{tags}
<span class="status" data-role="status">{escape(status)}</span>
<span class="avail" title="passed or warned, of {runs} runs (up to {history} kept)">{avail}</span>
</header>
<p class="msg" data-role="message">{escape(render.message(state))}</p>
<div class="strip" title="the last {STRIP} results, newest on the right">{_strip(row.results)}</div>
<footer>{" · ".join(facts)}</footer>
</article>"""


def _group(group: str, state: State) -> str:
    value = escape(state.value)
    return f"""<div class="group st-{value}" id="group-{group}">
<span class="label">{group}</span><span class="state" data-role="state">{value}</span>
<span class="help">{escape(GROUP_HELP.get(group, ""))}</span></div>"""


def render_page(page: Page, css: str, js: str) -> str:
    """The whole document (pure)."""
    overall = page.groups.get(HEALTH, State.UNKNOWN).value
    groups = "\n".join(_group(g, s) for g, s in page.groups.items())
    if page.checks is None:
        checks = (
            '<p class="note">Check details are not shown to this caller '
            "(<code>server.show_details</code>; send the bearer token).</p>"
        )
    else:
        rows = sorted(page.checks, key=_rank)
        checks = "\n".join(_check(r, page.now, page.history) for r in rows)
        legend = "".join(
            f'<span><i class="r r-{o}"></i>{o}</span>'
            for o in ("pass", "warn", "fail", "timeout", "skipped")
        )
        heading = f'<h2>Checks ({len(rows)})</h2><p class="legend">{legend}</p>'
        heading = f'<div class="heading">{heading}</div>'
        checks = f'{heading}<section class="checks">{checks}</section>'
    drain = "" if not page.draining else "This instance is draining: it is shutting down."
    host = escape(page.host)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<noscript><meta http-equiv="refresh" content="10"></noscript>
<title>{escape(overall)} · {host} · healthd</title>
<style>{css}</style></head>
<body><main id="main" data-state="{escape(overall)}">
<header class="top"><div><h1>healthd <span class="host">{host}</span></h1>
<p class="sub">rendered {_clock(page.now)} · {page.history} results kept per check ·
<span id="live" class="live">static page</span></p></div>
<div class="overall st-{escape(overall)}" id="overall">
<span data-role="state">{escape(overall)}</span></div></header>
<p class="banner" id="banner"{"" if page.draining else " hidden"}>{drain}</p>
<section class="groups">{groups}</section>
{checks}
<footer class="foot">healthd {escape(healthd.__version__)} · <a href="health">/health</a> ·
<a href="watch">/watch</a> · <a href="metrics">/metrics</a></footer>
</main><script>{js}</script></body></html>
"""


_ORDER = {"fail": 0, "timeout": 0, "skipped": 1, "unknown": 2, "warn": 3, "pass": 4}


def _rank(row: CheckRow) -> tuple[int, bool, str]:
    """Trouble first (failing, then unknown, then warning), critical before optional."""
    return _ORDER.get(row.state.status.value, 5), not row.state.critical, row.state.name


class Status:
    """The `/status` handler of one probe app."""

    def __init__(
        self, store: Store, inflight: InFlight, details: Callable[[web.Request], bool]
    ) -> None:
        self.store, self.inflight, self.details = store, inflight, details
        self.css = (HERE / "status.css").read_text(encoding="utf-8")
        self.js = (HERE / "status.js").read_text(encoding="utf-8")
        # Only this page's own style and script may run, by hash: were a message ever to
        # slip through unescaped, a script in it would not run.
        self.policy = (
            f"default-src 'none'; style-src {_sha256(self.css)}; script-src {_sha256(self.js)}; "
            "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'"
        )
        self.host = socket.gethostname()
        # Its own thread (not the default executor, which getaddrinfo shares): big pages are
        # rendered one at a time, so page loads cannot take more than one core between them.
        self._renderer: ThreadPoolExecutor | None = None

    def page(self, details: bool) -> Page:
        store = self.store
        rows = None
        if details:
            rows = []
            for state in store.snapshot(HEALTH).checks:
                kept = store.history(state.name)
                rows.append(CheckRow.of(state, kept, store.since(state.name)))
        return Page(
            groups={g: store.current(g) for g in GROUPS},
            draining=store.draining,
            checks=rows,
            host=self.host,
            now=time.time(),
            history=store.history_size,
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        page = self.page(self.details(request))  # a copy of what it shows, taken on the loop
        if page.checks is not None and len(page.checks) > THREAD_ABOVE:
            # ~0.3 ms a check: in a thread the loop keeps answering probes (GIL slices)
            if self._renderer is None:
                self._renderer = ThreadPoolExecutor(1, thread_name_prefix="healthd-status")
            loop = asyncio.get_running_loop()
            html = await loop.run_in_executor(self._renderer, render_page, page, self.css, self.js)
        else:
            html = render_page(page, self.css, self.js)
        response = web.Response(text=html, content_type="text/html")
        response.headers["Content-Security-Policy"] = self.policy
        return self.inflight.finish(response)


def _sha256(text: str) -> str:
    digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
    return f"'sha256-{digest}'"


def routes(
    store: Store, inflight: InFlight, details: Callable[[web.Request], bool]
) -> list[web.RouteDef]:
    return [web.get("/status", Status(store, inflight, details).handle)]
