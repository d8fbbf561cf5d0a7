"""DESIGN §16, the rest: forwarded signals, the `app` check, startup, stdio, PID 1 duties,
bad commands, healthd killed, the JSON exit line (real processes, real signals)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from healthd.supervise.exitline import signame
from tests.supervising import config, exit_line, get, started, supervised, wait_ready
from tests.test_lifecycle import wait_line

pytestmark = pytest.mark.slow


async def test_other_signals_are_forwarded_to_the_childs_group(tmp_path: Path) -> None:
    """SIGHUP (also a reload), SIGUSR1 (also the dump), SIGUSR2, SIGWINCH, SIGTTIN, SIGTTOU,
    SIGQUIT and a real-time signal reach the child; none of them stops healthd."""
    forwarded = [
        signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH, signal.SIGTTIN,
        signal.SIGTTOU, signal.SIGQUIT, signal.SIGRTMIN + 2,
    ]  # fmt: skip
    async with supervised(tmp_path) as (h, record):
        await started(record)
        await wait_ready(h)
        assert h.proc is not None
        for sig in forwarded:
            os.kill(h.proc.pid, sig)
            await record.wait(f"got {signame(sig)}")
        await wait_line(h, "reload: applied")
        await wait_line(h, "diagnostics: ")
        status, body = await get(h.url("/readyz"))
        assert status == 200
        assert "app" in json.loads(body)["checks"]  # the reload kept the implicit app check
        h.signal(signal.SIGTERM)
        assert await h.wait() == 0


async def test_the_app_check_says_pid_and_uptime_in_readiness_liveness_and_startup(
    tmp_path: Path,
) -> None:
    """The implicit `process` check `app`: pass with `pid N up …`, in all three groups."""
    async with supervised(tmp_path) as (h, record):
        await started(record)
        await wait_ready(h)
        pid = record.group()  # the child leads its own group: pgid == pid
        for path in ("/readyz", "/livez", "/startupz"):
            status, body = await get(h.url(path))
            assert status == 200
            message = json.loads(body)["checks"]["app"]["message"]
            assert re.fullmatch(rf"pid {pid} up \d+s", message), message
        h.signal(signal.SIGTERM)
        await h.wait()


async def test_startup_holds_the_apps_own_checks_not_its_dependencies(tmp_path: Path) -> None:
    """A database down at deploy time: readiness 503, startup 200 (no restart), as long as
    the app's own checks (the app check and `startup: true` ones) pass."""
    checks = """
  - {name: db, kind: tcp, address: "127.0.0.1:1", interval: 1s, timeout: 200ms}
  - {name: web, kind: loop, startup: true, interval: 1s, timeout: 200ms}
"""
    async with supervised(tmp_path, cfg=config(checks=checks)) as (h, record):
        await started(record)
        end = time.monotonic() + 10
        while (await get(h.url("/startupz")))[0] != 200:
            assert time.monotonic() < end, "/startupz never answered 200"
            await asyncio.sleep(0.05)
        _, body = await get(h.url("/startupz"))
        assert set(json.loads(body)["checks"]) == {"app", "web"}
        assert (await get(h.url("/readyz")))[0] == 503  # db down: out of the Service
        h.signal(signal.SIGTERM)
        await h.wait()


async def test_stdio_and_environment_are_the_childs(tmp_path: Path) -> None:
    """The child writes to healthd's stderr and sees healthd's environment."""
    script = "import os, sys; print('from the app', os.environ['MARK'], file=sys.stderr); "
    script += "import time; time.sleep(60)"
    argv = [sys.executable, "-c", script]
    async with supervised(tmp_path, argv=argv, env={"MARK": "m-41"}) as (h, _):
        await wait_line(h, "from the app m-41")
        h.signal(signal.SIGTERM)
        assert await h.wait() == 0  # python's default: killed by the SIGTERM healthd sent


async def test_healthd_reaps_orphans_and_never_steals_an_exec_checks_status(
    tmp_path: Path,
) -> None:
    """The child leaves orphans behind all the time while exec checks run every 100 ms:
    every exec run gets its own exit code (no 255, no `killed`), and no zombie is left."""
    checks = """
  - {name: ok, kind: exec, command: [sh, -c, "echo fine"], interval: 100ms, timeout: 90ms}
  - {name: warns, kind: exec, command: [sh, -c, "echo meh; exit 1"], interval: 100ms,
     timeout: 90ms, critical: false}
"""
    cfg = config(checks=checks, extra="history: 1000")
    async with supervised(tmp_path, "--orphans", cfg=cfg) as (h, record):
        await started(record)
        await asyncio.sleep(4)
        _, body = await get(h.url("/health?history=1000"))
        assert h.proc is not None
        zombies = orphaned_zombies(h.proc.pid)
        h.signal(signal.SIGTERM)
        assert await h.wait() == 0
    checks_seen = json.loads(body)["checks"]
    for name, outcome, message in (("ok", "pass", "fine"), ("warns", "warn", "meh")):
        runs = checks_seen[name]["history"]
        assert len(runs) >= 10, runs
        wrong = [r for r in runs if (r["outcome"], r["message"]) != (outcome, message)]
        assert not wrong, wrong
    assert len(zombies) <= 2, zombies  # those of the last moment, before SIGCHLD was handled


def orphaned_zombies(parent: int) -> list[int]:
    """Zombies whose parent is `parent` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(b")", 1)[1].split()
        if fields[0] == b"Z" and int(fields[1]) == parent:
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["no-such-command-41"], 127, "healthd: run: no-such-command-41: command not found"),
        (["./plain.txt"], 126, "healthd: run: ./plain.txt: not executable"),
        (["./bad-binary"], 126, "healthd: run: ./bad-binary: Exec format error"),
    ],
)
def test_a_command_that_cannot_run_is_one_line_and_the_shells_code(
    tmp_path: Path, argv: list[str], code: int, message: str
) -> None:
    """Not found: 127; not executable: 126; one line on stderr, no traceback, nothing started."""
    path = tmp_path / "healthd.yaml"
    path.write_text("server: {listen: '127.0.0.1:0'}\n")
    (tmp_path / "plain.txt").write_text("not a program\n")
    (tmp_path / "bad-binary").write_bytes(b"\x7fELF\x00garbage")
    (tmp_path / "bad-binary").chmod(0o755)
    done = subprocess.run(
        [sys.executable, "-m", "healthd", "run", "-c", str(path), "--", *argv],
        capture_output=True, text=True, timeout=30, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == code
    errors = [x for x in done.stderr.splitlines() if "ERROR" in x or x.startswith("healthd:")]
    assert len(errors) == 1
    assert errors[0].endswith(message.removeprefix("healthd: ")), done.stderr
    assert "Traceback" not in done.stderr


async def test_healthd_killed_takes_the_child_with_it(tmp_path: Path) -> None:
    """healthd dies of SIGKILL: the child gets its stop signal (PR_SET_PDEATHSIG), no orphan
    left running."""
    async with supervised(tmp_path) as (h, record):
        await started(record)
        h.signal(signal.SIGKILL)
        await h.wait()
        await record.wait("got SIGTERM")
        await record.wait("exiting 0")


async def test_the_exit_line_is_json_when_logging_is(tmp_path: Path) -> None:
    """logging.format: json: the exit line is one JSON object with `event: exit`."""
    cfg = config(extra="logging: {format: json}")
    async with supervised(tmp_path, cfg=cfg) as (h, record):
        await started(record)
        await wait_line(h, "listening on")
        h.signal(signal.SIGTERM)
        assert await h.wait() == 0
    line = json.loads(exit_line(h))
    assert line["event"] == "exit"
    assert line["msg"].startswith("exit: SIGTERM; draining 1.")
    fields = line["exit"]
    assert fields["reason"] == "SIGTERM"
    assert fields["stop_signal"] == "SIGTERM"
    assert fields["child"] == "exited 0"
    assert fields["code"] == 0
    assert fields["draining_s"] >= 1.0


UNSHARE = ["unshare", "--fork", "--pid", "--mount-proc", "--kill-child"]


def pid_one_of(prefix_pid: int) -> int:
    """The host pid of the namespace's PID 1: the prefix's (unshare's) child."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()
                if int(fields[1]) == prefix_pid:
                    return int(entry.name)
    raise AssertionError(f"no child of {prefix_pid}")


async def test_as_pid_1_healthd_reaps_every_orphan(tmp_path: Path) -> None:
    """As a PID namespace's first process (a container's): orphans of the app are reaped,
    exec checks keep their statuses, and SIGTERM still stops the app after the drain."""
    if need_root_unshare() is False:
        pytest.skip("unshare --pid needs root here")
    checks = """
  - {name: ok, kind: exec, command: [sh, -c, "echo fine"], interval: 300ms, timeout: 290ms}
"""  # a stolen exit status reads as a failure or a hang (timeout): room for a loaded machine
    cfg = config(checks=checks, extra="history: 1000")
    async with supervised(tmp_path, "--orphans", cfg=cfg, prefix=UNSHARE) as (h, record):
        await started(record)
        await wait_line(h, "(orphans: pid 1)")
        await asyncio.sleep(4)
        assert h.proc is not None
        healthd = pid_one_of(h.proc.pid)
        zombies = orphaned_zombies(healthd)
        _, body = await get(h.url("/health?history=1000"))
        os.kill(healthd, signal.SIGTERM)
        assert await h.wait() == 0
    runs = json.loads(body)["checks"]["ok"]["history"]
    assert len(runs) >= 10
    assert all((r["outcome"], r["message"]) == ("pass", "fine") for r in runs), runs
    assert len(zombies) <= 2, zombies
    assert record.saw("got SIGTERM")


async def test_as_pid_1_healthd_killed_leaves_nothing_running(tmp_path: Path) -> None:
    """healthd, PID 1, dies of SIGKILL: the kernel ends the whole namespace, app included."""
    if need_root_unshare() is False:
        pytest.skip("unshare --pid needs root here")
    async with supervised(tmp_path, "--on-stop", "ignore", prefix=UNSHARE) as (h, record):
        await started(record)
        await wait_line(h, "(orphans: pid 1)")
        assert h.proc is not None
        healthd = pid_one_of(h.proc.pid)
        app = pid_one_of(healthd)
        os.kill(healthd, signal.SIGKILL)
        await h.wait()
        end = time.monotonic() + 5
        while Path(f"/proc/{app}").exists() and zombie_or_running(app):
            assert time.monotonic() < end, "the app outlived its PID 1"
            await asyncio.sleep(0.02)


def zombie_or_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state != b"X"


def need_root_unshare() -> bool:
    done = subprocess.run([*UNSHARE, "true"], capture_output=True, timeout=10, check=False)
    return done.returncode == 0
