"""What the command line tells a person (issue 21): help for every option, `--version`, the
group it evaluated, the margin a short `--timeout` leaves, JSON one document a line, a last
line that agrees with the exit code, and what a Ctrl-C at a terminal does. Real processes."""

from __future__ import annotations

import argparse
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from healthd import __version__
from healthd.cli import parser
from tests.conftest import free_port
from tests.test_cli import healthd, write


def subcommand(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    chosen: argparse.ArgumentParser = sub.choices[name]
    return chosen


@pytest.mark.parametrize("command", ["check", "probe", "run", "validate"])
def test_every_option_has_help_text(command: str) -> None:
    """`healthd COMMAND --help` says something about each of its options and arguments."""
    actions = [a for a in subcommand(command)._actions if a.dest != "help"]
    assert actions
    for action in actions:
        assert len(action.help or "") > 10, f"{command} {action.dest}: no help text"
    shown = healthd(command, "--help").stdout
    for action in actions:
        assert str(action.help).split()[0] in shown


def test_version() -> None:
    """`healthd --version` prints the installed version and exits 0."""
    done = healthd("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"healthd {__version__}"


def test_check_group_startup_says_startup(tmp_path: Path) -> None:
    """`--group startup` evaluates the startup group and says so, in text and in JSON."""
    path = write(tmp_path, "checks:\n  - {name: a, kind: loop}\n")
    done = healthd("check", "-c", path, "--group", "startup")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "startup check passed"
    body = json.loads(healthd("check", "-c", path, "--group", "startupz", "--json").stdout)
    assert body["group"] == "startup"


@pytest.mark.parametrize(
    ("critical", "code", "last"),
    [("true", 2, "readiness check failed"), ("false", 1, "readiness check passed")],
)
def test_check_last_line_agrees_with_the_exit_code(
    tmp_path: Path, refused_port: int, critical: str, code: int, last: str
) -> None:
    """A failing critical check: exit 2 and `… check failed`; a failing non-critical one
    degrades: exit 1 and `… check passed` (as /readyz answers 200 then)."""
    cfg = "checks:\n  - {name: a, kind: loop}\n"
    cfg += (
        f"  - {{name: db, kind: tcp, address: '127.0.0.1:{refused_port}', critical: {critical}}}\n"
    )
    done = healthd("check", "-c", write(tmp_path, cfg))
    assert done.returncode == code, done.stderr
    assert done.stdout.splitlines()[-1] == last


def test_check_json_is_one_line_and_pretty_is_indented(tmp_path: Path) -> None:
    """`--json` prints one JSON document on one line (`| head -1` is the whole answer);
    `--json --pretty` indents it."""
    path = write(tmp_path, "checks:\n  - {name: a, kind: loop}\n  - {name: b, kind: loop}\n")
    plain = healthd("check", "-c", path, "--json")
    assert plain.returncode == 0, plain.stderr
    assert len(plain.stdout.splitlines()) == 1
    assert set(json.loads(plain.stdout.splitlines()[0])["checks"]) == {"a", "b"}
    pretty = healthd("check", "-c", path, "--json", "--pretty")
    assert pretty.stdout.startswith('{\n  "status": "healthy"')
    assert json.loads(pretty.stdout)["checks"].keys() == {"a", "b"}


def test_check_short_timeout_explains_the_margin(tmp_path: Path) -> None:
    """`--timeout 10ms` with the default 20ms margin: one stderr line says the checks get
    0ms and why; a budget well above the margin says nothing."""
    path = write(tmp_path, "checks:\n  - {name: a, kind: loop}\n")
    done = healthd("check", "-c", path, "--timeout", "10ms")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "healthd: --timeout 10ms leaves the checks 0ms: deadline.margin (20ms) is kept back"
        " to write the answer"
    ]
    assert "[-]a timeout after 0ms" in done.stdout.splitlines()
    assert healthd("check", "-c", path, "--timeout", "1s").stderr == ""


def read_until(fd: int, want: bytes, timeout: float) -> bytes:
    """What the terminal showed until `want` appeared (or `timeout` passed)."""
    seen, end = b"", time.monotonic() + timeout
    while want not in seen and time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the other side closed
                break
            if not chunk:
                break
            seen += chunk
    return seen


@pytest.mark.parametrize("tty", [True, False], ids=["terminal", "pipe"])
def test_ctrl_c_at_a_terminal_says_what_happens(tmp_path: Path, tty: bool) -> None:
    """SIGINT with stderr on a terminal: `draining 1s; Ctrl-C again to exit now`, and a
    second one exits at once (code 1) instead of after the drain; on a pipe the log line
    alone says it (nothing written for a person who is not there)."""
    port = free_port()
    cfg = f"server: {{listen: '127.0.0.1:{port}'}}\nshutdown: {{drain_delay: 1s, grace: 1s}}\n"
    cfg += "checks:\n  - {name: a, kind: loop}\n"
    path = write(tmp_path, cfg)
    master, slave = pty.openpty() if tty else os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "healthd", "run", "-c", path],
        stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
    )  # fmt: skip
    os.close(slave)
    try:
        assert b"listening on" in read_until(master, b"listening on", 20)
        proc.send_signal(signal.SIGINT)
        shown = read_until(master, b"Ctrl-C again" if tty else b"draining (", 10)
        shown += b"" if tty else read_until(master, b"Ctrl-C again", 0.5)
        said = b"healthd: draining 1s; Ctrl-C again to exit now" in shown
        assert said is tty, shown.decode(errors="replace")
        if tty:
            started = time.monotonic()
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=10) == 1
            assert time.monotonic() - started < 0.9  # at once, not after the 1 s drain
        else:
            assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
