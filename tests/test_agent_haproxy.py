"""DESIGN §18 against a real HAProxy 2.6: its agent-check reads healthd's agent port.

HAProxy's view comes from its stats socket (`show stat`): the weight follows degraded,
`DRAIN (agent)` follows `POST /admin/drain`, `DOWN (agent)` with healthd's reason in
`last_agt` follows a failing critical check, and the server is UP again on recovery.
With wrk through it, a draining server gets no request once HAProxy has seen the drain.
The servers behind HAProxy are healthd's own probe port; HAProxy's HTTP check is on
`/livez` (200 throughout: draining and a failing readiness check leave liveness alone),
so what changes the server's state is the agent.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest

from tests import haproxy as lb
from tests.conftest import free_port, need
from tests.podrig import Result, parse_wrk
from tests.procs import Healthd
from tests.test_agent import CONFIG, admin, beat

pytestmark = pytest.mark.slow

AGENT_INTER = 0.2  # seconds between HAProxy's agent polls
WAIT = 10.0  # bound on each change showing in HAProxy (a few polls on a loaded machine)


def config(front: int, stats: Path, h: Healthd, second: bool = False) -> str:
    agent = f"agent-check agent-port {h.agent_port} agent-inter {int(AGENT_INTER * 1000)}ms"
    plain = f"\n  server s2 127.0.0.1:{h.port} weight 100 check" if second else ""
    return f"""
global
  maxconn 4000
  stats socket {stats} level admin
defaults
  mode http
  timeout connect 2s
  timeout client 10s
  timeout server 10s
  timeout check 1s
frontend front
  bind 127.0.0.1:{front}
  default_backend app
backend app
  balance roundrobin
  option httpchk GET /livez
  default-server inter 500ms
  server s1 127.0.0.1:{h.port} weight 100 check {agent}{plain}
"""


async def seen(
    stats: Path, what: str, status: str, weight: str | None = None, agent: str = ""
) -> dict[str, str]:
    """s1's row once its status starts with `status`, its weight is `weight` (if given) and
    its `last_agt` starts with `agent`."""

    def done(servers: dict[str, dict[str, str]]) -> bool:
        row = servers.get("s1", {})
        return (
            row.get("status", "").startswith(status)
            and weight in (None, row.get("weight"))
            and row.get("last_agt", "").startswith(agent)
        )

    found = await asyncio.to_thread(lb.wait_for, stats, "app", done, WAIT, what)
    return found["s1"]


async def test_haproxy_follows_the_agent_through_every_state(tmp_path: Path) -> None:
    """weight 100 → 50 (degraded) → DRAIN (agent) → UP → DOWN (agent) with the reason in
    last_agt → UP at 100 on recovery."""
    haproxy = need("haproxy", "as the load balancer", ["/usr/sbin/haproxy"])
    async with Healthd(tmp_path, CONFIG) as h:
        await beat(h, "db", "pass")
        await beat(h, "cache", "pass")
        front, stats = free_port(), tmp_path / "haproxy.sock"
        with lb.running(haproxy, tmp_path, config(front, stats, h)):
            await asyncio.to_thread(lb.wait_listening, front)
            await seen(stats, "UP at 100", "UP", "100", agent="via agent : up")
            await beat(h, "cache", "fail", "cache cold")
            await seen(stats, "weight 50 while degraded", "UP", "50")
            await admin(h, "/admin/drain")
            row = await seen(stats, "DRAIN (agent)", "DRAIN (agent)")
            await admin(h, "/admin/ready")
            await beat(h, "cache", "pass")
            await seen(stats, "UP at 100 after the drain", "UP", "100")
            await beat(h, "db", "fail", "primary unreachable")
            row = await seen(stats, "DOWN (agent)", "DOWN (agent)")
            assert "db: primary unreachable" in row["last_agt"], row["last_agt"]
            await beat(h, "db", "pass")
            await seen(stats, "UP again on recovery", "UP", "100")


async def test_a_draining_server_gets_no_request_after_the_agent_poll(tmp_path: Path) -> None:
    """wrk through HAProxy to two servers; s1's healthd drains: once HAProxy shows DRAIN
    (agent), s1's request count stops, s2 takes everything, and no request fails."""
    haproxy = need("haproxy", "as the load balancer", ["/usr/sbin/haproxy"])
    wrk = need("wrk", "to load HAProxy")
    async with Healthd(tmp_path, CONFIG) as h:
        await beat(h, "db", "pass")
        await beat(h, "cache", "pass")
        front, stats = free_port(), tmp_path / "haproxy.sock"
        with lb.running(haproxy, tmp_path, config(front, stats, h, second=True)):
            await asyncio.to_thread(lb.wait_listening, front)
            await seen(stats, "s1 UP at 100", "UP", "100")
            duration = 4.0
            load = subprocess.Popen(
                [wrk, "-t1", "-c20", f"-d{duration:g}s", "--timeout", "3s",
                 f"http://127.0.0.1:{front}/livez"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            )  # fmt: skip
            try:
                await asyncio.sleep(1.0)
                before = lb.servers(stats, "app")
                await admin(h, "/admin/drain")
                drained_at = time.monotonic()
                at_drain = await seen(stats, "DRAIN (agent)", "DRAIN (agent)")
                noticed = time.monotonic() - drained_at
                out, _ = await asyncio.to_thread(load.communicate, timeout=duration + 20)
            finally:
                if load.poll() is None:
                    load.kill()
                    load.wait(5)
            after = lb.servers(stats, "app")
    result = Result("agent", 20, wrk=out.decode(errors="replace"))
    parse_wrk(result.wrk, result)
    assert result.requests > 500, result.wrk
    assert result.failed == 0, result.wrk
    assert int(before["s1"]["stot"]) > 100  # s1 had its share before the drain
    assert noticed < 5 * AGENT_INTER + 2.0  # HAProxy saw it within a few polls
    # From HAProxy's DRAIN on: not one more request to s1; s2 took the rest.
    assert after["s1"]["stot"] == at_drain["stot"], (at_drain["stot"], after["s1"]["stot"])
    assert int(after["s2"]["stot"]) - int(before["s2"]["stot"]) > 200
