"""Real healthd processes for end-to-end tests: start, talk to, signal, reap."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from tests.conftest import free_port

PORT_TRIES = 3


class Healthd:
    """`async with Healthd(tmp_path, config) as h:` runs `healthd run -c <config>` on free ports.

    `config` may use `{port}`, `{admin_port}`, `{grpc_port}` and `{agent_port}`; stderr lines
    are collected in `lines`, and stdout lines in `out` when `capture_stdout` is set (e.g.
    console-exported spans). With `argv`, healthd supervises it: `healthd run -c <config>
    -- argv…`; with `prefix`, healthd runs under it (e.g. `unshare --pid`: then `proc` is
    the prefix's).
    """

    def __init__(
        self,
        directory: Path,
        config: str,
        name: str = "healthd",
        env: dict[str, str] | None = None,
        capture_stdout: bool = False,
        argv: Sequence[str] = (),
        prefix: Sequence[str] = (),
    ) -> None:
        self.path = directory / f"{name}.yaml"
        self.template = config
        self._choose_ports()
        self.env = env
        self.argv, self.prefix = list(argv), list(prefix)
        self.lines: list[str] = []
        self.capture_stdout = capture_stdout
        self.out: list[str] = []
        self._out_reader: asyncio.Task[None] | None = None
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    def _choose_ports(self) -> None:
        self.port, self.admin_port, self.grpc_port = free_port(), free_port(), free_port()
        self.agent_port = free_port()
        config = self.template.replace("{port}", str(self.port))
        config = config.replace("{grpc_port}", str(self.grpc_port))
        config = config.replace("{agent_port}", str(self.agent_port))
        self.path.write_text(config.replace("{admin_port}", str(self.admin_port)))

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def admin_url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.admin_port}{path}"

    async def _read(self) -> None:
        assert self.proc is not None
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.lines.append(line)
            if "listening on" in line:
                self._listening.set()

    async def _read_stdout(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.out.append(raw.decode(errors="replace").rstrip())

    async def start(self, timeout: float = 15.0) -> Healthd:
        """Start the daemon; if a port free_port() chose was taken meanwhile (any outgoing
        connection may get it as its ephemeral port), start again on fresh ones."""
        for _ in range(PORT_TRIES - 1):
            try:
                return await self._start(timeout)
            except RuntimeError:
                if not any("Address already in use" in line for line in self.lines):
                    raise
            self.lines, self.out = [], []
            self._listening = asyncio.Event()
            self._choose_ports()
        return await self._start(timeout)

    async def _start(self, timeout: float) -> Healthd:
        import os

        env = {**os.environ, **(self.env or {})}
        stdout = asyncio.subprocess.PIPE if self.capture_stdout else asyncio.subprocess.DEVNULL
        self.proc = await asyncio.create_subprocess_exec(
            *self.prefix, sys.executable, "-m", "healthd", "run", "-c", str(self.path),
            *(["--", *self.argv] if self.argv else []),
            stdin=asyncio.subprocess.DEVNULL, stdout=stdout,
            stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        self._reader = asyncio.create_task(self._read())
        if self.capture_stdout:
            self._out_reader = asyncio.create_task(self._read_stdout())
        waiter = asyncio.create_task(self._listening.wait())
        await asyncio.wait({waiter, self._reader}, timeout=timeout, return_when="FIRST_COMPLETED")
        if not self._listening.is_set():
            waiter.cancel()
            await self.kill()
            raise RuntimeError("healthd did not start:\n" + "\n".join(self.lines))
        return self

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 5.0)
        if self._out_reader is not None:
            await asyncio.wait_for(self._out_reader, 5.0)
        return code

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            try:  # bounded: a lost exit status must fail here, not hang to the suite's limit
                await asyncio.wait_for(self.proc.wait(), 10.0)
            except TimeoutError:
                raise AssertionError(
                    f"pid {self.proc.pid}: no exit status 10 s after SIGKILL"
                ) from None
        for reader in (self._reader, self._out_reader):
            if reader is not None:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader

    async def __aenter__(self) -> Healthd:
        return await self.start()

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.signal(signal.SIGKILL)
        await self.kill()
