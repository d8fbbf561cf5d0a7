"""`exec`: run a Nagios-style plugin; exit 0 pass, 1 warn, 2 fail, 3 unknown.

The first line of stdout (perfdata after `|` dropped) is the message.
The plugin runs in its own session with a minimal environment plus `env` and
`HEALTHD_TIMEOUT_MS` (the remaining budget, for plugins that take a timeout).

ATTENTION: `Process.wait()` on CPython 3.11 waits until every pipe closes, so a
grandchild holding stdout would hold the check. We use a SubprocessProtocol
instead: `process_exited` fires at exit, output is read into a bounded buffer,
and after the plugin exits (or is cancelled) its whole process group is
signalled (TERM, a short grace, then KILL): an exec check leaves nothing running.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import subprocess
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr

from healthd.checks.base import Context, SpecBase
from healthd.deadline import Deadline
from healthd.errors import CheckFailed
from healthd.model import Observation, Outcome, Reason

OUTPUT_LIMIT = 4096
GRACE = 0.1  # after TERM before KILL; also how long output may trail the exit
REAP_LIMIT = 1.0  # how long we wait for a KILLed plugin to be reaped
BASE_ENV = {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


class _Plugin(asyncio.SubprocessProtocol):
    """Collects bounded stdout/stderr and signals exit without waiting for pipes."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.output: dict[int, bytearray] = {1: bytearray(), 2: bytearray()}
        self.closed: set[int] = set()
        self.exited: asyncio.Future[None] = loop.create_future()
        self.settled: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        buffer = self.output[fd]
        buffer += data[: max(0, OUTPUT_LIMIT - len(buffer))]  # the rest is drained, not kept
        self._settle()

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self.closed.add(fd)
        self._settle()

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)
        self._settle()

    def _has_line(self, fd: int) -> bool:
        return b"\n" in self.output[fd] or len(self.output[fd]) >= OUTPUT_LIMIT

    def _settle(self) -> None:
        """Output is complete enough once stdout has a line, or both pipes closed."""
        if self.settled.done() or not self.exited.done():
            return
        if self._has_line(1) or (1 in self.closed and (2 in self.closed or self._has_line(2))):
            self.settled.set_result(None)

    def first_line(self) -> str:
        for fd in (1, 2):
            text = self.output[fd].decode("utf-8", "replace").strip()
            if text:
                return text.splitlines()[0].split("|", 1)[0].strip()
        return ""


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    # The group may be gone (all exited) or not ours any more: nothing to do then.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


class ExecSpec(SpecBase):
    kind: Literal["exec"] = "exec"
    example: ClassVar[dict[str, Any]] = {"command": ["sh", "-c", "echo all good; exit 0"]}
    command: list[str] = Field(min_length=1, description="argv; no shell unless you run one")
    env: dict[str, SecretStr] = Field(
        default_factory=dict, description="added to a minimal environment (PATH, LANG)"
    )

    def build(self, context: Context | None = None) -> ExecCheck:
        return ExecCheck(self.command, self.env, context or Context())


class ExecCheck:
    def __init__(self, command: list[str], env: dict[str, SecretStr], context: Context) -> None:
        self.command, self.env, self.context = command, env, context

    def _environment(self, deadline: Deadline) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH") or os.defpath,
            **BASE_ENV,
            **{key: value.get_secret_value() for key, value in self.env.items()},
            "HEALTHD_TIMEOUT_MS": str(math.floor(deadline.remaining() * 1000)),
        }

    async def __call__(self, deadline: Deadline) -> Observation:
        loop = asyncio.get_running_loop()
        program = self.command[0]
        spawn = asyncio.ensure_future(
            loop.subprocess_exec(
                lambda: _Plugin(loop),
                *self.command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self._environment(deadline),
                start_new_session=True,
            )
        )
        try:
            # shield: cancelled mid-spawn, asyncio would kill only the leader and then wait
            # for every pipe to close (a grandchild's `sleep 30`); _abandon stops the group.
            transport, plugin = await asyncio.shield(spawn)
        except asyncio.CancelledError:
            await _abandon(spawn)  # rare (cancelled within the spawn's few ms), and short
            raise
        except FileNotFoundError:
            raise CheckFailed(Reason.UNEXPECTED, f"UNKNOWN: {program}: not found") from None
        except PermissionError:
            raise CheckFailed(Reason.UNEXPECTED, f"UNKNOWN: {program}: not executable") from None
        try:
            # shield: a cancelled await would cancel `exited` itself, and _stop reads it
            await asyncio.shield(plugin.exited)
            await asyncio.wait([plugin.settled], timeout=GRACE)
        except BaseException:
            # ATTENTION: cancelled at the deadline. TERM → grace → KILL goes on in a held task,
            # so the answer is not late by the grace period; nothing is left running after it.
            self.context.hold(_stop(transport, plugin), "exec-cleanup")
            raise
        await _stop(transport, plugin)  # it exited: only stragglers of its group get KILL
        return _judge(transport.get_returncode(), plugin.first_line())


async def _abandon(spawn: asyncio.Future[tuple[asyncio.SubprocessTransport, _Plugin]]) -> None:
    """Cancelled while spawning: let the spawn finish (a moment), then stop what it started."""
    try:
        transport, plugin = await spawn
    except Exception:  # noqa: BLE001 - it did not start, so nothing runs
        return
    await _stop(transport, plugin)


async def _stop(transport: asyncio.SubprocessTransport, plugin: _Plugin) -> None:
    """End the plugin and everything it started; safe to call on any path."""
    pgid = transport.get_pid()
    try:
        if not plugin.exited.done():
            _signal_group(pgid, signal.SIGTERM)
            await asyncio.wait([plugin.exited], timeout=GRACE)
    finally:
        _signal_group(pgid, signal.SIGKILL)  # stragglers: grandchildren, TERM-ignorers
        try:
            if not plugin.exited.done():
                await asyncio.wait([plugin.exited], timeout=REAP_LIMIT)
        finally:
            transport.close()


def _judge(code: int | None, line: str) -> Observation:
    """Nagios exit codes → Observation, or CheckFailed."""
    if code == 0:
        return Observation(message=line or "exit 0")
    if code == 1:
        return Observation(Outcome.WARN, line or "exit 1")
    if code == 2:
        raise CheckFailed(Reason.UNHEALTHY, line or "exit 2")
    if code == 3:
        text = line if line.upper().startswith("UNKNOWN") else f"UNKNOWN: {line or 'exit 3'}"
        raise CheckFailed(Reason.UNEXPECTED, text)
    if code is not None and code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        raise CheckFailed(Reason.UNEXPECTED, f"killed by {name}" + (f": {line}" if line else ""))
    raise CheckFailed(Reason.UNEXPECTED, f"exit {code}" + (f": {line}" if line else ""))
