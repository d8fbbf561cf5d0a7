"""The gRPC health server (DESIGN §12) on a real `healthd run`, through grpcio's own health
stub: what `grpc_health_probe`, the kubelet's gRPC probe and Envoy call."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from healthd.deadline import format_grpc_timeout, parse_grpc_timeout
from healthd.errors import ConfigError
from tests.conftest import under_ci

try:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
except ImportError:  # pragma: no cover - `make test` installs the grpc extra
    if under_ci():
        raise
    pytest.skip("grpcio is not installed (pip install 'healthd[grpc]')", allow_module_level=True)

from healthd.grpchealth import until_set
from tests.procs import Healthd
from tests.test_lifecycle import closed_at, wait_line

pytestmark = pytest.mark.slow

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
TOKEN = "grpc-test-token"
MARGIN = 0.06  # deadline.margin in these configs: room for a loaded 2-core machine
DRAIN, GRACE = 1.0, 5.0

CONFIG = """
server:
  listen: "127.0.0.1:{port}"
  admin_listen: "127.0.0.1:{admin_port}"
  grpc_listen: "127.0.0.1:{grpc_port}"
  token: TOKEN
  max_watchers: 2
deadline: {default: 400ms, max: MAX, margin: MARGIN}
shutdown: {drain_delay: DRAIN, grace: GRACE}
checks:
  - {name: db, kind: tcp, address: "127.0.0.1:DB", interval: 200ms, timeout: 150ms}
  - {name: loop, kind: loop, interval: 200ms, timeout: 100ms, fail_lag: 5s}
"""
# An on_demand check that never answers (a connect to a full accept queue hangs): it runs
# inside each caller's budget, so the budget alone decides when the answer leaves.
HUNG = """
  - {name: hung, kind: tcp, address: "127.0.0.1:HOLE", mode: on_demand, critical: false,
     interval: 10s, timeout: 3s}
"""


def config(db: int, hole: int | None = None, maximum: float = 1.0) -> str:
    text = CONFIG + (HUNG if hole is not None else "")
    for key, value in {
        "TOKEN": TOKEN, "MARGIN": f"{MARGIN * 1000:g}ms", "DRAIN": f"{DRAIN:g}s",
        "MAX": f"{maximum:g}s",
        "GRACE": f"{GRACE:g}s", "DB": str(db), "HOLE": str(hole),
    }.items():  # fmt: skip
        text = text.replace(key, value)
    return text


@contextlib.asynccontextmanager
async def stub(h: Healthd) -> AsyncIterator[Any]:
    """grpcio's health stub on an asyncio channel to the daemon's gRPC port."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{h.grpc_port}") as channel:
        yield health_pb2_grpc.HealthStub(channel)


async def check(s: Any, service: str, timeout: float | None = 2.0, **kw: Any) -> int:
    answer = await s.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout, **kw)
    return int(answer.status)


async def until(s: Any, service: str, status: int, timeout: float = 5.0) -> None:
    """Poll `Check(service)` until it says `status` (bounded)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if await check(s, service) == status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{service!r} never became {status}")


async def next_status(call: Any, timeout: float = 5.0) -> int:
    message = await asyncio.wait_for(call.read(), timeout)
    assert message is not grpc.aio.EOF, "the Watch stream ended"
    return int(message.status)


@contextlib.asynccontextmanager
async def port_listener(port: int = 0) -> AsyncIterator[int]:
    """A real TCP listener (what the `db` check connects to); closed on the way out."""
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@contextlib.contextmanager
def hole() -> Iterator[int]:
    from tests import servers

    with servers.blackhole() as port:
        yield port


@contextlib.asynccontextmanager
async def hung_daemon(tmp_path: Path, maximum: float = 1.0) -> AsyncIterator[tuple[Healthd, Any]]:
    """A daemon with a passing `db` check and the `hung` on_demand one, and a stub to it."""
    with hole() as blackhole:
        async with port_listener() as db:
            h = Healthd(tmp_path, config(db, blackhole, maximum))
            async with h, stub(h) as s:
                await until(s, "db", SERVING)
                yield h, s


async def metrics(h: Healthd) -> str:
    async with aiohttp.ClientSession() as session, session.get(h.url("/metrics")) as resp:
        return await resp.text()


# --- Check --------------------------------------------------------------------------------------


async def test_check_answers_for_groups_checks_and_unknown_names(tmp_path: Path) -> None:
    """ "", readiness, liveness, startup and a check's name are SERVING when all pass; any
    other name is NOT_FOUND with a one-line reason."""
    async with port_listener() as db, Healthd(tmp_path, config(db)) as h, stub(h) as s:
        await until(s, "", SERVING)
        for service in ("", "readiness", "liveness", "startup", "db", "loop"):
            assert await check(s, service) == SERVING, service
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await check(s, "nope")
        assert info.value.code() is grpc.StatusCode.NOT_FOUND
        assert "'nope'" in (info.value.details() or "")
        assert "\n" not in (info.value.details() or "")


WARNS = """
  - {name: warns, kind: exec, command: [sh, -c, "echo disk 85% full; exit 1"],
     interval: 500ms, timeout: 400ms}
"""


async def test_a_warning_check_is_serving(tmp_path: Path) -> None:
    """A check that warns (a Nagios exit 1) is SERVING on its own and in its group, as its
    HTTP probe is 200: a warning never takes an instance out of rotation."""
    async with port_listener() as db, Healthd(tmp_path, config(db) + WARNS) as h, stub(h) as s:
        await until(s, "", SERVING)
        async with aiohttp.ClientSession() as session:
            url = h.url("/readyz/warns?verbose")
            for _ in range(100):  # until its first run has landed
                async with session.get(url, headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                    text = await r.text()
                if "warn:" in text:
                    break
                await asyncio.sleep(0.05)
        assert "[+]warns warn: disk 85% full" in text, text
        assert await check(s, "warns") == SERVING
        assert await check(s, "readiness") == SERVING


async def test_answered_checks_are_counted_as_probes(tmp_path: Path) -> None:
    """Each answered Check lands in healthd_probe_requests_total{endpoint="grpc"} and the
    budget histogram, labelled with what went on the wire: SERVING and NOT_SERVING, never
    an HTTP code gRPC did not send."""
    async with hung_daemon(tmp_path) as (h, s):
        before = counted(await metrics(h))
        assert await check(s, "db") == SERVING
        assert await check(s, "hung", timeout=0.3) == NOT_SERVING
        after = counted(await metrics(h))
    assert after["SERVING"] == before.get("SERVING", 0) + 1
    assert after["NOT_SERVING"] == before.get("NOT_SERVING", 0) + 1
    assert not {"200", "503"} & after.keys()
    assert after["budget"] == before["budget"] + 2


def counted(text: str) -> dict[str, float]:
    """The gRPC rows of the probe metrics: answers by code, and budgets observed."""
    rows = re.findall(r'healthd_probe_requests_total\{code="(\w+)",endpoint="grpc"\} (\S+)', text)
    found = {code: float(value) for code, value in rows}
    budget = re.search(r'healthd_deadline_budget_seconds_count\{endpoint="grpc"\} (\S+)', text)
    found["budget"] = float(budget.group(1)) if budget else 0.0
    return found


async def test_check_and_watch_follow_a_dependency_going_down(tmp_path: Path) -> None:
    """A tcp check's port closing turns "" and the check NOT_SERVING on Check and on Watch;
    liveness stays SERVING."""
    listener = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    db = listener.sockets[0].getsockname()[1]
    try:
        async with Healthd(tmp_path, config(db)) as h, stub(h) as s:
            await until(s, "", SERVING)
            ready = s.Watch(health_pb2.HealthCheckRequest())
            one = s.Watch(health_pb2.HealthCheckRequest(service="db"))
            assert await next_status(ready) == SERVING
            assert await next_status(one) == SERVING
            listener.close()  # nothing listens on the db port from here on
            await listener.wait_closed()
            assert await next_status(ready) == NOT_SERVING
            assert await next_status(one) == NOT_SERVING
            assert await check(s, "") == NOT_SERVING
            assert await check(s, "db") == NOT_SERVING
            assert await check(s, "liveness") == SERVING
            ready.cancel()
            one.cancel()
    finally:
        listener.close()


async def test_watch_sees_a_recovery(tmp_path: Path, refused_port: int) -> None:
    """A Watch opened while the check fails sends NOT_SERVING, then SERVING once it passes."""
    db = refused_port  # nothing on it yet: the db check fails
    async with Healthd(tmp_path, config(db)) as h, stub(h) as s:
        await until(s, "db", NOT_SERVING)
        call = s.Watch(health_pb2.HealthCheckRequest(service="readiness"))
        assert await next_status(call) == NOT_SERVING
        async with port_listener(db):
            assert await next_status(call) == SERVING
            assert await check(s, "db") == SERVING
        assert await next_status(call) == NOT_SERVING  # and down again once it closes
        call.cancel()


# --- deadlines ----------------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["hung", ""])
async def test_a_200ms_deadline_is_answered_in_time_and_not_cut_early(
    tmp_path: Path, service: str
) -> None:
    """A Check with a 200 ms deadline, a hung on_demand check behind it: NOT_SERVING (not
    DEADLINE_EXCEEDED) by the deadline, and not before budget minus margin."""
    async with hung_daemon(tmp_path) as (_h, s):
        for _ in range(3):
            started = time.monotonic()
            status = await check(s, service, timeout=0.2)
            elapsed = time.monotonic() - started
            # "" is readiness: the hung check is non-critical there, so it only
            # degrades it; the check itself is NOT_SERVING (it timed out).
            assert status == (NOT_SERVING if service else SERVING)
            assert 0.2 - MARGIN - 0.03 <= elapsed < 0.2, elapsed


async def test_no_deadline_is_the_default_budget_and_max_caps_a_long_one(tmp_path: Path) -> None:
    """Without a call deadline the budget is deadline.default (400 ms); a 5 s deadline is
    capped at deadline.max (1 s); neither waits for the check's own 3 s timeout."""
    async with hung_daemon(tmp_path) as (_h, s):
        started = time.monotonic()
        assert await check(s, "hung", timeout=None) == NOT_SERVING
        assert 0.4 - MARGIN - 0.03 <= time.monotonic() - started < 0.9
        started = time.monotonic()
        assert await check(s, "hung", timeout=5.0) == NOT_SERVING
        assert 1.0 - MARGIN - 0.03 <= time.monotonic() - started < 2.0


async def test_timeout_metadata_follows_the_probe_precedence(tmp_path: Path) -> None:
    """`x-request-timeout-ms` metadata is the budget as on HTTP (within the call's deadline);
    an unparseable one is INVALID_ARGUMENT with the probe's one-line message."""
    async with hung_daemon(tmp_path) as (_h, s):
        started = time.monotonic()
        md = (("x-request-timeout-ms", "250"),)
        assert await check(s, "hung", timeout=3.0, metadata=md) == NOT_SERVING
        assert 0.25 - MARGIN - 0.03 <= time.monotonic() - started < 0.7
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await check(s, "hung", metadata=(("x-request-timeout-ms", "soon"),))
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "X-Request-Timeout-Ms: 'soon' is not a number"


# --- Watch, List ------------------------------------------------------------------------------


async def test_watch_of_an_unknown_name_says_service_unknown(tmp_path: Path) -> None:
    """Watch("nope") sends SERVICE_UNKNOWN and stays open (the spec: it may appear later)."""
    async with port_listener() as db, Healthd(tmp_path, config(db)) as h, stub(h) as s:
        call = s.Watch(health_pb2.HealthCheckRequest(service="nope"))
        assert await next_status(call) == SERVICE_UNKNOWN
        await asyncio.sleep(0.3)
        assert not call.done()
        call.cancel()


async def test_watchers_beyond_max_watchers_are_resource_exhausted(tmp_path: Path) -> None:
    """With max_watchers 2, a third Watch is RESOURCE_EXHAUSTED; healthd_watchers{grpc}
    counts the open ones, and a slot given back can be taken again."""
    async with port_listener() as db, Healthd(tmp_path, config(db)) as h, stub(h) as s:
        calls = [s.Watch(health_pb2.HealthCheckRequest(service="liveness")) for _ in range(2)]
        for call in calls:
            assert await next_status(call) in (SERVING, NOT_SERVING)
        third = s.Watch(health_pb2.HealthCheckRequest(service="liveness"))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await third.read()
        assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "max_watchers" in (info.value.details() or "")
        assert 'healthd_watchers{transport="grpc"} 2.0' in await metrics(h)
        calls.pop().cancel()
        end = time.monotonic() + 5
        while 'healthd_watchers{transport="grpc"} 1.0' not in await metrics(h):
            assert time.monotonic() < end, "the cancelled Watch kept its slot"
            await asyncio.sleep(0.05)
        again = s.Watch(health_pb2.HealthCheckRequest(service=""))
        assert await next_status(again) in (SERVING, NOT_SERVING)
        for call in [*calls, again]:
            call.cancel()


async def test_list_gives_groups_and_checks_to_a_token_holder(tmp_path: Path) -> None:
    """List: every group (and "") always; every check's status only with the bearer token
    (show_details: when_authorized), as on HTTP."""
    async with port_listener() as db, Healthd(tmp_path, config(db)) as h, stub(h) as s:
        await until(s, "", SERVING)
        request = health_pb2.HealthListRequest()
        public = await s.List(request, timeout=2)
        auth = (("authorization", f"Bearer {TOKEN}"),)
        full = await s.List(request, timeout=2, metadata=auth)
        wrong = await s.List(request, timeout=2, metadata=(("authorization", "Bearer no"),))
    groups = {"": SERVING, "readiness": SERVING, "liveness": SERVING, "startup": SERVING}
    assert {k: v.status for k, v in public.statuses.items()} == groups
    assert {k: v.status for k, v in wrong.statuses.items()} == groups
    assert {k: v.status for k, v in full.statuses.items()} == {
        **groups,
        "db": SERVING,
        "loop": SERVING,
    }


# --- the drain ----------------------------------------------------------------------------------


async def test_sigterm_drains_watch_and_check_and_ends_streams_at_the_close(
    tmp_path: Path,
) -> None:
    """SIGTERM: the readiness Watch gets NOT_SERVING at once, liveness stays SERVING; at the
    close every Watch ends (not holding grace) and new calls are refused, while a Check in
    flight then is still answered within grace; exit 0."""
    async with hung_daemon(tmp_path, maximum=5.0) as (h, s):
        ready = s.Watch(health_pb2.HealthCheckRequest(service="readiness"))
        live = s.Watch(health_pb2.HealthCheckRequest(service="liveness"))
        assert await next_status(ready) == SERVING
        assert await next_status(live) == SERVING
        signalled = time.time()
        h.signal(signal.SIGTERM)
        assert await next_status(ready, timeout=DRAIN) == NOT_SERVING  # the draining event
        assert await check(s, "liveness") == SERVING
        # (readiness runs the hung on_demand check: a short budget keeps this quick)
        assert await check(s, "readiness", timeout=0.3) == NOT_SERVING
        # In flight across the close: the hung check holds it ~2.9 s, within grace.
        late = asyncio.create_task(check(s, "hung", timeout=3.0))
        ended = {}
        for name, call in (("readiness", ready), ("liveness", live)):
            message = await asyncio.wait_for(call.read(), DRAIN + 3)
            assert message is grpc.aio.EOF, name
            assert await call.code() is grpc.StatusCode.OK
            ended[name] = time.time()
        assert not late.done()  # the streams ended first: they never waited on it
        await wait_line(h, "listeners closed at ")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await check(s, "", timeout=2.0)
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE
        assert await late == NOT_SERVING  # answered within grace, not cancelled
        answered = time.time()
        assert await h.wait() == 0
    closed = closed_at(h)
    assert closed - signalled >= DRAIN - 0.05
    for name, at in ended.items():
        assert closed - 0.05 <= at < closed + 1.0, (name, at - closed)
    assert answered < signalled + DRAIN + GRACE


async def test_the_readme_client_example_works(tmp_path: Path) -> None:
    """The README's grpc_health_probe-style Python client prints SERVING against healthd."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    (code,) = re.findall(r"```python\n(# grpc-health-example.*?)```", readme, re.S)
    async with port_listener() as db, Healthd(tmp_path, config(db)) as h, stub(h) as s:
        await until(s, "readiness", SERVING)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code.replace("127.0.0.1:8097", f"127.0.0.1:{h.grpc_port}"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert (proc.returncode, out.decode().strip()) == (0, "SERVING"), err.decode()


async def test_a_check_continues_the_callers_trace(tmp_path: Path) -> None:
    """A Check carrying `traceparent` metadata: healthd.evaluate continues that trace and its
    on_demand check run is a child span, as for an HTTP probe."""
    from tests.test_tracing import CONSOLE, PARENT_ID, TRACE_ID, complete, spans_in_trace

    text = (
        'server: {listen: "127.0.0.1:{port}", admin_listen: "127.0.0.1:{admin_port}",\n'
        '         grpc_listen: "127.0.0.1:{grpc_port}"}\n'
        "checks:\n"
        '  - {name: self, kind: tcp, address: "127.0.0.1:{port}", mode: on_demand, timeout: 1s}\n'
    )
    async with Healthd(tmp_path, text, env=CONSOLE, capture_stdout=True) as h, stub(h) as s:
        md = (("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01"),)
        assert await check(s, "readiness", metadata=md) == SERVING
        [spans] = await spans_in_trace([h], TRACE_ID, complete)
    [evaluate] = [x for x in spans if x["name"] == "healthd.evaluate"]
    [run] = [x for x in spans if x["name"] == "healthd.check"]
    assert evaluate["parent_id"] == "0x" + PARENT_ID
    assert evaluate["attributes"]["healthd.group"] == "readiness"
    assert run["parent_id"] == evaluate["context"]["span_id"]


async def test_a_reload_keeps_the_grpc_listener_and_says_so(tmp_path: Path) -> None:
    """SIGHUP with another grpc_listen: the running server stays where it is, the log says a
    restart is needed, and the rest of the file applies."""
    async with port_listener() as db, Healthd(tmp_path, config(db)) as h, stub(h) as s:
        await until(s, "", SERVING)
        h.path.write_text(h.path.read_text().replace(f":{h.grpc_port}", ":1"))
        h.signal(signal.SIGHUP)
        line = await wait_line(h, "server.grpc_listen needs a restart")
        assert f"keeping 127.0.0.1:{h.grpc_port}" in line
        await wait_line(h, "reload: applied")
        assert await check(s, "") == SERVING


# --- start-up -----------------------------------------------------------------------------------


def test_grpc_listen_without_grpcio_is_a_one_line_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """server.grpc_listen set but grpcio missing: the config names the pip command."""
    from healthd.config import parse_settings

    monkeypatch.setitem(sys.modules, "grpc", None)  # what the import system says when absent
    with pytest.raises(ConfigError) as info:
        parse_settings('server: {grpc_listen: "127.0.0.1:8097"}\n', "app.yaml")
    assert str(info.value) == (
        "app.yaml:1: server.grpc_listen: the gRPC health server needs grpcio: "
        "pip install 'healthd[grpc]' (a source checkout: .venv/bin/pip install -e '.[grpc]')"
    )


async def test_a_taken_grpc_port_stops_start_up_with_one_line(tmp_path: Path) -> None:
    """A gRPC port another process holds: `healthd run` exits 2 saying so (no shared
    SO_REUSEPORT listener, no traceback)."""
    holder = socket.create_server(("127.0.0.1", 0), reuse_port=True)  # as grpcio's default
    port = holder.getsockname()[1]
    text = f'server: {{listen: "127.0.0.1:0", grpc_listen: "127.0.0.1:{port}"}}\n'
    (tmp_path / "h.yaml").write_text(text)
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "healthd", "run", "-c", str(tmp_path / "h.yaml"),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        holder.close()
    assert proc.returncode == 2
    lines = [x for x in err.decode().splitlines() if x.startswith("healthd: ")]
    assert lines == [
        f"healthd: server.grpc_listen: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]
    assert "Traceback" not in err.decode()


async def test_grpc_and_exec_checks_share_the_default_loop(tmp_path: Path) -> None:
    """On the default asyncio loop, exec checks keep forking children while the gRPC server
    answers, and no child dies (uvloop + grpc + exec: children killed in grpcio's fork
    handlers). A run late under load is a timeout, tolerated; a killed child is a fail."""
    exec_config = (
        'server: {listen: "127.0.0.1:{port}", admin_listen: "127.0.0.1:{admin_port}",\n'
        '         grpc_listen: "127.0.0.1:{grpc_port}"}\n'
        "checks:\n"
        "  - {name: plugin, kind: exec, command: [/bin/sh, -c, 'echo ok'],\n"
        "     interval: 100ms, timeout: 90ms}\n"
    )
    async with Healthd(tmp_path, exec_config) as h, stub(h) as s:
        await until(s, "plugin", SERVING, timeout=10)
        end, answers = time.monotonic() + 3, 0
        while time.monotonic() < end:
            assert await check(s, "") in (SERVING, NOT_SERVING)
            answers += 1
        assert h.proc is not None
        assert h.proc.returncode is None
        row = r'healthd_check_runs_total\{check="plugin",kind="exec",outcome="(\w+)"\} (\S+)'
        runs = dict(re.findall(row, await metrics(h)))
    assert float(runs.get("fail", 0)) == 0, [x for x in h.lines if "plugin" in x]
    assert float(runs["pass"]) >= 10
    assert answers > 10


async def test_uvloop_with_exec_checks_is_warned_about(tmp_path: Path) -> None:
    """HEALTHD_EVENT_LOOP=uvloop, gRPC health and an exec check: one warning at start."""
    text = (
        'server: {listen: "127.0.0.1:{port}", admin_listen: "127.0.0.1:{admin_port}",\n'
        '         grpc_listen: "127.0.0.1:{grpc_port}"}\n'
        "checks:\n"
        "  - {name: plugin, kind: exec, command: [/bin/sh, -c, 'echo ok']}\n"
    )
    async with Healthd(tmp_path, text, env={"HEALTHD_EVENT_LOOP": "uvloop"}) as h, stub(h) as s:
        await until(s, "plugin", SERVING)
        line = await wait_line(h, "gRPC health under uvloop")
    assert "WARNING" in line
    assert any("event loop: uvloop" in x for x in h.lines)


# --- pure parts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [0.0, 0.000_123, 0.2, 30.0, 99.9, 100.0, 86_400.0])
def test_a_call_deadline_written_as_grpc_timeout_reads_back_no_later(seconds: float) -> None:
    """format_grpc_timeout fits gRPC's 8 digits, rounds down, parses back within 1 µs/1 ppm."""
    text = format_grpc_timeout(seconds)
    assert len(text) <= 9
    back = parse_grpc_timeout(text)
    assert back <= seconds
    assert seconds - back <= max(1e-6, seconds * 1e-6)


async def test_until_set_ends_the_body_when_the_event_is_set() -> None:
    """until_set returns (no exception) once the event is set, cancelling what the body awaited."""
    event, cancelled = asyncio.Event(), asyncio.Event()

    async def body() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            cancelled.set()

    asyncio.get_running_loop().call_later(0.05, event.set)
    await asyncio.wait_for(until_set(event, body()), 5)
    assert cancelled.is_set()


async def test_until_set_lets_an_outside_cancellation_through() -> None:
    """A cancellation from outside (the client went away) still propagates."""
    task = asyncio.create_task(until_set(asyncio.Event(), asyncio.sleep(30)))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
