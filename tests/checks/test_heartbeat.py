"""`heartbeat`: a pass only while the application's last posted pass is younger than `ttl`."""

from __future__ import annotations

import pytest

from healthd import runner
from healthd.checks.base import Context
from healthd.checks.heartbeat import HeartbeatCheck, HeartbeatSpec
from healthd.config import parse_settings
from healthd.deadline import Deadline
from healthd.errors import ConfigError
from healthd.model import Beat, CheckResult, Outcome, Reason
from healthd.store import Store
from healthd.testing import ManualClock

SPEC = HeartbeatSpec(name="app", kind="heartbeat", ttl="2s", timeout="100ms")


class Beating:
    """A heartbeat check reading its beats from a store, as the daemon builds it."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.store = Store(clock)
        self.check: HeartbeatCheck = SPEC.build(Context(beats=self.store, clock=clock))

    def post(self, status: str, message: str = "") -> None:
        self.store.post_beat(SPEC.name, Beat.parse(status, message, self.clock()))

    @property
    def last(self) -> Beat | None:
        return self.store.beat(SPEC.name)


async def run(check: Beating) -> CheckResult:
    return await runner.run(SPEC, check.check, Deadline.after(1.0))


def beating(clock: ManualClock) -> Beating:
    return Beating(clock)


async def test_no_beat_yet_fails() -> None:
    """Before the application posts anything the check fails and says so."""
    result = await run(beating(ManualClock()))
    assert result.outcome is Outcome.FAIL
    assert result.reason is Reason.UNHEALTHY
    assert result.message == "no heartbeat received yet (ttl 2s)"


async def test_pass_holds_until_ttl_then_expires() -> None:
    """A posted pass counts for exactly `ttl`: still a pass just before, a failure just after."""
    clock = ManualClock()
    check = beating(clock)
    check.post("pass")
    clock.advance(1.99)
    before = await run(check)
    assert before.outcome is Outcome.PASS
    assert before.message == "heartbeat 1990ms ago"
    clock.advance(0.02)
    after = await run(check)
    assert after.outcome is Outcome.FAIL
    assert after.message == "heartbeat expired: last one 2010ms ago, ttl 2s"


async def test_posted_message_is_the_pass_message() -> None:
    """A pass posted with a message shows that message."""
    check = beating(ManualClock())
    check.post("pass", "processed 120 jobs\nsecond line dropped")
    assert (await run(check)).message == "processed 120 jobs"


async def test_posted_warn_and_fail_carry_their_message() -> None:
    """A posted warn is a warn, a posted fail a failure, each with the application's message."""
    check = beating(ManualClock())
    check.post("warn", "queue at 80%")
    warn = await run(check)
    assert (warn.outcome, warn.message) == (Outcome.WARN, "queue at 80%")
    check.post("fail", "queue stuck")
    fail = await run(check)
    assert (fail.outcome, fail.reason, fail.message) == (
        Outcome.FAIL,
        Reason.UNHEALTHY,
        "queue stuck",
    )


async def test_a_new_beat_restarts_the_ttl() -> None:
    """An expired heartbeat recovers with the next post."""
    clock = ManualClock()
    check = beating(clock)
    check.post("pass")
    clock.advance(5)
    assert (await run(check)).outcome is Outcome.FAIL
    check.post("pass")
    assert (await run(check)).outcome is Outcome.PASS


def test_unknown_status_is_refused() -> None:
    """Only pass, warn and fail can be posted; the last beat is left as it was."""
    check = beating(ManualClock())
    with pytest.raises(ValueError, match="status must be one of pass, warn, fail"):
        check.post("ok")
    assert check.last is None


def test_ttl_is_required_and_positive() -> None:
    """The config names a missing or non-positive ttl."""
    base = "checks:\n  - name: app\n    kind: heartbeat\n"
    with pytest.raises(ConfigError, match=r"checks\[0\]\.ttl: required"):
        parse_settings(base)
    with pytest.raises(ConfigError, match=r"checks\[0\]\.ttl: must be positive"):
        parse_settings(base + "    ttl: 0s\n")
    assert parse_settings(base + "    ttl: 30s\n").checks[0].kind == "heartbeat"
