"""Running tests/embedded_app.py (an aiohttp app with healthd embedded) as a real process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from types import TracebackType

from tests.conftest import free_port

APP = Path(__file__).with_name("embedded_app.py")
ASGI_APP = Path(__file__).with_name("asgi_app.py")  # the same routes: FastAPI, healthd.asgi


class EmbeddedApp:
    """`async with EmbeddedApp("--grace", "1s") as app:` on a free port; stderr in `lines`
    (with the monotonic time each arrived in `times`). `script`: the app to run."""

    script = APP

    def __init__(
        self,
        *args: str,
        script: Path | None = None,
        env: dict[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.script, self.env = script or type(self).script, env or {}
        self.port = port or free_port()
        # tests/embedded_app.py and asgi_app.py take the port first, examples read PORT
        self.args = [str(self.port), *args] if self.script in (APP, ASGI_APP) else list(args)
        self.lines: list[str] = []
        self.times: list[float] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._serving = asyncio.Event()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _read(self) -> None:
        assert self.proc is not None
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            self.lines.append(raw.decode(errors="replace").rstrip())
            self.times.append(time.monotonic())
            if "serving on" in self.lines[-1]:
                self._serving.set()

    async def start(self, wait: bool = True) -> EmbeddedApp:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, str(self.script), *self.args,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PORT": str(self.port), **self.env},
        )  # fmt: skip
        self._reader = asyncio.create_task(self._read())
        if wait:
            waiter = asyncio.create_task(self._serving.wait())
            await asyncio.wait({waiter, self._reader}, timeout=20, return_when="FIRST_COMPLETED")
            if not self._serving.is_set():
                waiter.cancel()
                await self.kill()
                raise RuntimeError("the app did not start:\n" + "\n".join(self.lines))
        return self

    def signal(self, sig: signal.Signals = signal.SIGTERM) -> float:
        """Send `sig`; the monotonic time it went."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        return time.monotonic()

    async def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 5.0)
        return code

    async def line(self, text: str, timeout: float = 10.0) -> tuple[str, float]:
        """The first stderr line containing `text` and when it arrived (waits for it)."""
        until = time.monotonic() + timeout
        while time.monotonic() < until:
            for line, at in zip(self.lines, self.times, strict=False):
                if text in line:
                    return line, at
            await asyncio.sleep(0.01)
        raise AssertionError(f"no line with {text!r} in:\n" + "\n".join(self.lines))

    def exit_line(self) -> str:
        found = [line for line in self.lines if " exit: " in line]
        assert len(found) == 1, "\n".join(self.lines)
        return found[0].split(" INFO ", 1)[1]

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def __aenter__(self) -> EmbeddedApp:
        return await self.start()

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.kill()
