"""/status in a real browser (headless chromium over DevTools): what people see."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from healthd.health import Health
from healthd.web.probes import make_app
from tests.browser import Browser, Page
from tests.conftest import free_port
from tests.helpers import settings

MakeServer = Callable[..., Awaitable[TestServer]]
STATUS = "el => el.querySelector('[data-role=status]').textContent"


def engine_for(port: int, refused: int) -> Health:
    checks: list[dict[str, Any]] = [
        {"name": "api", "address": f"127.0.0.1:{port}", "interval": "200ms", "timeout": "100ms"},
        {"name": "db", "address": f"127.0.0.1:{refused}", "interval": "200ms", "timeout": "100ms"},
        {"name": "cache", "address": f"127.0.0.1:{refused}", "interval": "200ms",
         "timeout": "100ms", "critical": False, "flapping": "off"},
    ]  # fmt: skip
    return Health(settings=settings(checks, server={"show_details": "always"}))


@contextlib.asynccontextmanager
async def status_page(
    aiohttp_server: MakeServer, first: tuple[str, ...]
) -> AsyncIterator[tuple[TestServer, Browser, Page, asyncio.Server]]:
    """A running engine whose `api` check connects to a real listener (yielded, to close),
    served; once checks `first` have results, /status open in chromium with its live
    stream connected."""
    port, refused = free_port(), free_port()
    listener = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
    engine = engine_for(port, refused)
    engine.start()
    try:
        server = await aiohttp_server(make_app(engine.views()))
        async with asyncio.timeout(5):
            while any(engine.store.check(n).last is None for n in first):  # type: ignore[union-attr]
                await asyncio.sleep(0.02)
        async with Browser() as browser:
            page = await browser.open(str(server.make_url("/status")))
            await page.wait_for("document.getElementById('live')?.classList.contains('on')")
            yield server, browser, page, listener
    finally:
        listener.close()
        await engine.stop()


async def statuses(page: Page) -> dict[str, str]:
    script = (
        "Object.fromEntries([...document.querySelectorAll('article.check')].map(el =>"
        " [el.dataset.name, el.querySelector('[data-role=status]').textContent]))"
    )
    return dict(await page.evaluate(script))


async def test_the_page_shows_every_check_with_its_status(aiohttp_server: MakeServer) -> None:
    """After the page's scripts ran (the live stream is connected), every check is on it
    with the status /health gives, each with a 60-result strip, and the groups' states;
    with scripts disabled the server-rendered page says the same."""
    async with status_page(aiohttp_server, ("api", "db", "cache")) as (server, browser, page, _):
        seen = await statuses(page)
        health = json.loads(await _health(server))
        assert seen == {name: c["status"] for name, c in health["checks"].items()}
        assert seen["api"] == "pass"
        assert seen["db"] == "fail"
        assert await page.evaluate("document.querySelectorAll('#check-db .strip i').length") == 60
        groups = await page.evaluate(
            "Object.fromEntries([...document.querySelectorAll('.group')].map(g =>"
            " [g.id, g.querySelector('[data-role=state]').textContent]))"
        )
        assert groups["group-readiness"] == "unhealthy"
        assert groups["group-liveness"] == "healthy"
        # the inline style ran under the page's CSP (allowed by its hash)
        radius = "getComputedStyle(document.querySelector('article.check')).borderRadius"
        assert await page.evaluate(radius) == "12px"
        # any other inline script is refused by it (defence behind the escaping)
        inject = (
            "(() => { const s = document.createElement('script');"
            " s.textContent = 'window.injected = 1'; document.body.append(s);"
            " return window.injected === undefined; })()"
        )
        assert await page.evaluate(inject) is True
        # and without JavaScript the same statuses are there, rendered by the server
        quiet = await browser.open("about:blank")
        await quiet.call("Emulation.setScriptExecutionDisabled", value=True)
        await quiet.call("Page.navigate", url=str(server.make_url("/status")))
        await quiet.wait_for("document.querySelectorAll('article.check').length === 4")
        assert await statuses(quiet) == seen
        assert await quiet.evaluate("document.getElementById('live').textContent") == (
            "static page"
        )


async def _health(server: TestServer) -> str:
    async with aiohttp.ClientSession() as session, session.get(server.make_url("/health")) as r:
        return await r.text()


async def test_a_check_that_fails_changes_on_the_open_page_without_a_reload(
    aiohttp_server: MakeServer,
) -> None:
    """The page stays open; the port the `api` check connects to closes: the card turns
    `fail` and readiness `unhealthy` through /watch, in the same document (no reload)."""
    async with status_page(aiohttp_server, ("api",)) as (_, _, page, listener):
        assert (await statuses(page))["api"] == "pass"
        await page.evaluate("window.marker = 'same document'")
        listener.close()
        await listener.wait_closed()
        closed = time.monotonic()
        await page.wait_for(
            "document.querySelector('#check-api [data-role=status]').textContent === 'fail'",
            timeout=5,
        )
        took = time.monotonic() - closed
        assert took < 0.2 * 1.1 + 1.0, took  # an interval, then the stream and the DOM
        assert await page.evaluate("window.marker") == "same document"
        assert await page.evaluate(
            "document.getElementById('check-api').classList.contains('s-fail')"
        )
        message = "document.querySelector('#check-api [data-role=message]').textContent"
        assert await page.wait_for(message) == "connection refused"
