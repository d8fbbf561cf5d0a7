"""DESIGN §16, the pure parts: exit codes and the exit line, stop_signal, the implicit `app`
check and the startup group, the `process` check, resolving the command."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from healthd.checks.process import ProcessCheck, uptime
from healthd.config import parse_settings
from healthd.deadline import Deadline
from healthd.errors import CheckFailed, CommandError
from healthd.supervise import resolve
from healthd.supervise.exitline import Ended, Stop
from tests.helpers import spec_named

TERM, KILL = int(signal.SIGTERM), int(signal.SIGKILL)


@pytest.mark.parametrize(
    ("stop", "code"),
    [
        (Stop("SIGTERM", 5, Ended(code=0), 1.2, "SIGTERM"), 0),
        (Stop("SIGTERM", 5, Ended(code=3), 1.2, "SIGTERM"), 3),
        (Stop("SIGTERM", 5, Ended(signal=TERM), 1.2, "SIGTERM"), 0),  # uvicorn re-raises it
        (Stop("SIGTERM", 5, Ended(signal=TERM), 1.2, "SIGQUIT"), 128 + TERM),  # not what we sent
        (Stop("SIGTERM", 5, Ended(signal=int(signal.SIGSEGV)), 1.2, "SIGTERM"), 139),
        (Stop("SIGTERM", 5, Ended(signal=KILL), 20, "SIGTERM", killed="stop_timeout"), 137),
        (Stop("child ended", 0, Ended(code=7), 12), 7),
        (Stop("child ended", 0, Ended(signal=TERM), 12), 128 + TERM),  # someone else's SIGTERM
    ],
)
def test_the_exit_code_follows_how_the_child_ended(stop: Stop, code: int) -> None:
    """The child's code; its death by the stop signal healthd sent is 0; other signals 128+N."""
    assert stop.code == code


def test_the_exit_line_reads_as_the_design_says() -> None:
    """One line: reason, time draining, how the child stopped and how long it took, probes
    in flight, code."""
    stop = Stop("SIGTERM", 5.0, Ended(code=0), 1.21, "SIGTERM")
    assert stop.line() == (
        "exit: SIGTERM; draining 5.00 s; child SIGTERM → exited 0 in 1.21 s; "
        "probes in flight 0; code 0"
    )


def test_the_exit_line_says_the_child_ignored_the_stop_signal() -> None:
    """Killed after stop_timeout: the line says it ignored the stop signal; code 137."""
    stop = Stop("SIGTERM", 5.0, Ended(signal=KILL), 20.0, "SIGTERM", killed="stop_timeout")
    assert "child SIGTERM → ignored it for 20.00 s (stop_timeout), SIGKILL → killed by SIGKILL" in (
        stop.line()
    )
    assert stop.fields()["killed"] == "stop_timeout"
    assert stop.fields()["code"] == 137


def test_the_exit_line_of_a_child_that_ended_on_its_own() -> None:
    """No stop signal sent: the line says the child ended on its own, and how long it ran."""
    stop = Stop("child ended", 0.0, Ended(code=3), 192.0, in_flight=2, cancelled=1)
    assert stop.line() == (
        "exit: child ended; draining 0.00 s; child exited 3 on its own after 3m12s up; "
        "probes in flight 2 (1 cut at the end of grace); code 3"
    )


@pytest.mark.parametrize(("written", "canonical"), [("SIGQUIT", "SIGQUIT"), ("int", "SIGINT")])
def test_stop_signal_takes_any_signal_name(written: str, canonical: str) -> None:
    """`shutdown.stop_signal`: a signal name, with or without SIG, any case; default SIGTERM
    and stop_timeout 20 s."""
    settings = parse_settings(f"shutdown: {{stop_signal: {written}}}")
    assert settings.shutdown.stop_signal == canonical
    assert parse_settings("{}").shutdown.stop_signal == "SIGTERM"
    assert parse_settings("{}").shutdown.stop_timeout == 20.0


def test_supervised_settings_add_the_app_check_to_readiness_liveness_and_startup() -> None:
    """Supervised, the implicit `process` check `app` joins readiness, liveness and startup,
    and startup holds the service's own checks, not its dependencies."""
    text = """
checks:
  - {name: db, kind: tcp, address: "127.0.0.1:5432"}
  - {name: web, kind: http, url: "http://127.0.0.1:8000/ready", startup: true}
"""
    settings = parse_settings(text)
    assert settings.members("startup") == ["web"]  # marked: web alone
    plain = parse_settings(text.replace(", startup: true", ""))
    assert plain.members("startup") == ["db", "web"]  # unmarked, unsupervised: as before
    supervised = plain.supervised()
    assert supervised.members("readiness") == ["db", "web", "app"]
    assert supervised.members("liveness") == ["loop", "app"]
    assert supervised.members("startup") == ["app"]
    assert spec_named(supervised, "app").kind == "process"
    assert plain.supervised().model_copy(update={"history": 5}).members("startup") == ["app"]


def test_the_implicit_app_check_yields_to_a_configured_one_and_to_a_taken_name() -> None:
    """A config with a `process` check keeps it (no second one); a name `app` already taken
    by another check makes the implicit one `app-process`."""
    own = parse_settings("checks: [{name: svc, kind: process}]").supervised()
    assert [c.name for c in own.all_checks if c.kind == "process"] == ["svc"]
    taken = parse_settings("checks: [{name: app, kind: tcp, address: 'h:1'}]").supervised()
    assert [c.name for c in taken.all_checks if c.kind == "process"] == ["app-process"]


class FakeChild:
    def __init__(self, pid: int | None, up: float, ended: str | None = None) -> None:
        self.pid, self.uptime, self.ended = pid, up, ended


async def test_the_process_check_passes_while_the_child_runs() -> None:
    """`pid 41 up 3m12s` while it runs; a fail once it ended, or without a child at all."""
    observation = await ProcessCheck(FakeChild(41, 192.4))(Deadline.after(1))
    assert observation.message == "pid 41 up 3m12s"
    with pytest.raises(CheckFailed, match="pid 41 exited 3"):
        await ProcessCheck(FakeChild(41, 5, "exited 3"))(Deadline.after(1))
    with pytest.raises(CheckFailed, match="no process"):
        await ProcessCheck(None)(Deadline.after(1))


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.4, "0s"), (12.9, "12s"), (192, "3m12s"), (7500, "2h05m"), (3 * 86400 + 4 * 3600, "3d4h")],
)
def test_uptime_reads_like_ps(seconds: float, text: str) -> None:
    assert uptime(seconds) == text


def test_resolve_finds_the_program_as_a_shell_would(tmp_path: Path) -> None:
    """On PATH or by path; not found → 127, not executable → 126."""
    assert resolve(["sh", "-c", "true"]).endswith("/sh")
    with pytest.raises(CommandError) as missing:
        resolve(["no-such-command-41"])
    assert missing.value.code == 127
    plain = tmp_path / "plain"
    plain.write_text("x")
    with pytest.raises(CommandError) as not_executable:
        resolve([str(plain)])
    assert not_executable.value.code == 126
    with pytest.raises(CommandError) as directory:
        resolve([str(tmp_path)])
    assert directory.value.code == 126
