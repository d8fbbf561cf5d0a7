"""Logs: one structured line per check or group transition, never one per passing run."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from healthd.config import LoggingSettings
from healthd.deadline import Deadline
from healthd.health import Health
from healthd.model import Outcome
from healthd.observers import setup
from healthd.observers.log import make_handler
from healthd.testing import FakeCheck
from tests.conftest import free_port
from tests.helpers import engine_with, settings


class Captured:
    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    def lines(self) -> list[str]:
        return [line for line in self.stream.getvalue().splitlines() if line]

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines()]


def capture(fmt: str) -> Iterator[Captured]:
    stream = io.StringIO()
    handler = make_handler(LoggingSettings(format=fmt), stream)
    logger = logging.getLogger("healthd.state")
    before = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield Captured(stream)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before)


@pytest.fixture
def json_log() -> Iterator[Captured]:
    yield from capture("json")


@pytest.fixture
def text_log() -> Iterator[Captured]:
    yield from capture("text")


def observed(fakes: dict[str, FakeCheck], checks: list[dict[str, Any]]) -> Health:
    s = settings(checks)
    telemetry = setup(s, registry=CollectorRegistry(), env={})
    engine = engine_with(fakes, s, telemetry=telemetry)
    return engine


async def run(engine: Health, times: int = 1) -> None:
    for _ in range(times):
        await engine.evaluate("readiness", Deadline.after(1.0), fresh=True)


async def test_passing_runs_are_silent(json_log: Captured) -> None:
    """Ten passing runs log the first transitions only (unknown → pass, then → healthy)."""
    checks = [{"name": "db"}, {"name": "loop", "kind": "loop"}]
    engine = observed({"db": FakeCheck([Outcome.PASS]), "loop": FakeCheck([Outcome.PASS])}, checks)
    await run(engine, 10)
    groups = ["readiness", "liveness", "startup", "health"]
    assert [(r.get("check") or r["group"], r["from"], r["to"]) for r in json_log.records()] == [
        ("db", "unknown", "pass"),
        *[(g, "none", "unknown") for g in groups],  # loop has no result yet
        ("loop", "unknown", "pass"),
        *[(g, "unknown", "healthy") for g in groups],
    ]


async def test_check_transition_is_one_json_line(json_log: Captured) -> None:
    """pass → fail → pass: one JSON object per change, with check, from, to, reason, message."""
    fake = FakeCheck([Outcome.PASS, Outcome.FAIL, Outcome.FAIL, Outcome.PASS], message="nope")
    engine = observed({"db": fake}, [{"name": "db"}])
    await run(engine, 4)
    checks = [r for r in json_log.records() if r["event"] == "check_transition"]
    assert [(r["from"], r["to"]) for r in checks] == [
        ("unknown", "pass"), ("pass", "fail"), ("fail", "pass"),
    ]  # fmt: skip
    failed = checks[1]
    assert failed["check"] == "db"
    assert failed["level"] == "warning"
    assert failed["reason"] == "unhealthy"
    assert failed["message"] == "nope"
    assert failed["msg"] == "check db: pass → fail (unhealthy: nope)"
    assert {"ts", "level", "msg", "event", "check", "from", "to"} <= set(failed)
    assert failed["ts"].endswith("Z")
    groups = [(r["from"], r["to"]) for r in json_log.records() if r.get("group") == "readiness"]
    assert groups == [("none", "healthy"), ("healthy", "unhealthy"), ("unhealthy", "healthy")]


async def test_text_format(text_log: Captured) -> None:
    """The text format is one human line per transition."""
    engine = observed({"db": FakeCheck([Outcome.FAIL])}, [{"name": "db", "critical": False}])
    await run(engine, 2)
    lines = text_log.lines()
    assert len(lines) == 5  # the check, then readiness, liveness, startup and health
    assert lines[0].endswith("WARNING check db: unknown → fail (unhealthy: scripted failure)")
    assert lines[1].endswith("INFO group readiness: none → degraded")


async def test_secrets_stay_out_of_logs(json_log: Captured) -> None:
    """A real http check with a password in its URL fails; the logged line carries no secret."""
    url = f"http://app:hunter2@127.0.0.1:{free_port()}/health?token=t0psecret"
    engine = observed({}, [{"name": "api", "kind": "http", "url": url, "timeout": "500ms"}])
    await run(engine)
    text = "\n".join(json_log.lines())
    [failed] = [r for r in json_log.records() if r.get("check") == "api"]
    assert failed["to"] == "fail"
    assert failed["reason"] == "refused"
    assert "hunter2" not in text
    assert "t0psecret" not in text
