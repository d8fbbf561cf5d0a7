"""A real browser for tests: headless Debian `chromium`, driven over the DevTools protocol
with aiohttp's websocket client (no new dependency).

    async with Browser() as browser:
        page = await browser.open("http://127.0.0.1:8099/status")
        await page.wait_for("document.readyState === 'complete'")
        text = await page.evaluate("document.title")

Start-up is ~0.3 s (one process per test keeps tests independent and cheap).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import shutil
import tempfile
from typing import Any

import aiohttp

from tests.conftest import need

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
    "--disable-extensions", "--disable-background-networking", "--disable-sync",
    "--disable-component-update", "--mute-audio", "--remote-debugging-port=0",
]  # fmt: skip


class BrowserError(Exception):
    """The browser answered a command with an error, or a script threw."""


class Browser:
    """One headless chromium process and its DevTools websocket."""

    def __init__(self) -> None:
        self.path = need("chromium", "to load /status in a real browser")
        self.profile = tempfile.mkdtemp(prefix="healthd-chromium-")
        self.proc: asyncio.subprocess.Process | None = None
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._drain: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Browser:
        self.proc = await asyncio.create_subprocess_exec(
            self.path, *FLAGS, f"--user-data-dir={self.profile}", "about:blank",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self.proc.stderr is not None
        lines: list[str] = []
        async with asyncio.timeout(20):
            while True:
                raw = await self.proc.stderr.readline()
                if not raw:
                    raise BrowserError("chromium exited:\n" + "".join(lines))
                lines.append(raw.decode(errors="replace"))
                found = re.search(r"ws://\S+", lines[-1])
                if found:
                    break
        self._drain = asyncio.create_task(self._discard(self.proc.stderr))
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(found.group(0), max_msg_size=0)
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.ws is not None and not self.ws.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.call("Browser.close"), 3)
        if self._reader is not None:
            self._reader.cancel()
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()
        if self.proc is not None:
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._drain is not None:
            self._drain.cancel()
        shutil.rmtree(self.profile, ignore_errors=True)

    @staticmethod
    async def _discard(stream: asyncio.StreamReader) -> None:
        while await stream.readline():
            pass

    async def _read(self) -> None:
        assert self.ws is not None
        async for message in self.ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                continue
            data = message.json()
            waiter = self._waiting.pop(data.get("id", -1), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(data)

    async def call(self, method: str, session: str | None = None, **params: Any) -> Any:
        """One DevTools command; its `result`."""
        assert self.ws is not None
        number = next(self._ids)
        waiter = asyncio.get_running_loop().create_future()
        self._waiting[number] = waiter
        message: dict[str, Any] = {"id": number, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        await self.ws.send_json(message)
        answer = await asyncio.wait_for(waiter, 15)
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error']}")
        return answer.get("result", {})

    async def open(
        self, url: str, *, dark: bool = False, width: int = 1100, height: int = 900
    ) -> Page:
        """A new tab showing `url` (prefers-color-scheme: dark when `dark`)."""
        target = await self.call("Target.createTarget", url="about:blank")
        attached = await self.call(
            "Target.attachToTarget", targetId=target["targetId"], flatten=True
        )
        page = Page(self, attached["sessionId"])
        await page.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                        deviceScaleFactor=1, mobile=False)  # fmt: skip
        scheme = "dark" if dark else "light"
        features = [{"name": "prefers-color-scheme", "value": scheme}]
        await page.call("Emulation.setEmulatedMedia", features=features)
        await page.call("Page.navigate", url=url)
        return page


class Page:
    """One tab."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser, self.session = browser, session

    async def call(self, method: str, **params: Any) -> Any:
        return await self.browser.call(method, self.session, **params)

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise BrowserError(result["exceptionDetails"].get("text", "script error"))
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 10.0) -> Any:
        """Poll `expression` every 20 ms until it is truthy; its value."""
        async with asyncio.timeout(timeout):
            while True:
                with contextlib.suppress(BrowserError):  # e.g. the document is being replaced
                    value = await self.evaluate(expression)
                    if value:
                        return value
                await asyncio.sleep(0.02)

    async def screenshot(self) -> bytes:
        import base64

        shot = await self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        return base64.b64decode(shot["data"])
