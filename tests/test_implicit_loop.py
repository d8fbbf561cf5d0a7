"""DESIGN §2: a config without a `loop` check gets one, so /livez can fail."""

from __future__ import annotations

from healthd.deadline import Deadline
from healthd.model import Outcome, State
from healthd.testing import FakeCheck
from tests.helpers import engine_with, settings, spec_named


def test_a_config_with_only_db_gets_a_loop_check_in_liveness() -> None:
    """Only `db` configured: liveness holds the added `loop`; readiness stays `db` alone."""
    s = settings([{"name": "db"}])
    assert [c.name for c in s.checks] == ["db"]  # what the operator wrote is untouched
    assert [(c.name, c.kind) for c in s.all_checks] == [("db", "tcp"), ("loop", "loop")]
    assert s.members("liveness") == ["loop"]
    assert s.members("readiness") == ["db"]
    assert s.members("startup") == ["db"]
    assert s.members("health") == ["db", "loop"]


def test_the_added_check_takes_a_free_name() -> None:
    """A tcp check already called `loop`: the added one is `event-loop`."""
    s = settings([{"name": "loop"}])
    assert s.members("liveness") == ["event-loop"]


def test_a_config_with_its_own_loop_check_gets_none_added() -> None:
    """An explicit loop check is the liveness check; nothing is added."""
    s = settings([{"name": "db"}, {"name": "lag", "kind": "loop", "fail_lag": "2s"}])
    assert [c.name for c in s.all_checks] == ["db", "lag"]
    assert s.members("liveness") == ["lag"]


def test_the_added_check_takes_the_configured_defaults() -> None:
    """defaults: apply to the added check like to any other."""
    s = settings([{"name": "db"}], defaults={"interval": "3s", "timeout": "200ms"})
    loop = spec_named(s, "loop")
    assert (loop.interval, loop.timeout) == (3.0, 0.2)


async def test_liveness_fails_when_the_added_loop_check_fails() -> None:
    """The added check is a real member: its failure makes liveness unhealthy."""
    s = settings([{"name": "db"}])
    engine = engine_with({"db": FakeCheck([Outcome.PASS]), "loop": FakeCheck([Outcome.FAIL])}, s)
    live = await engine.evaluate("liveness", Deadline.after(1.0), fresh=True)
    ready = await engine.evaluate("readiness", Deadline.after(1.0), fresh=True)
    assert live.state is State.UNHEALTHY
    assert ready.state is State.HEALTHY
