"""GET /watch: Server-Sent Events from the store, read by a real client over loopback."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from healthd.checks.base import SpecBase
from healthd.events import Observer
from healthd.health import Health
from healthd.model import CheckState, Outcome
from healthd.watchers import Watchers
from healthd.web.probes import WATCH, make_app
from tests.conftest import free_port
from tests.helpers import result, settings
from tests.procs import Healthd
from tests.sse import Stream

TOKEN = "watch-token-1234"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
MakeServer = Callable[..., Awaitable[TestServer]]


def flip(engine: Health, name: str, outcome: Outcome, message: str = "") -> None:
    """Record one result for `name` (a transition when its status changes)."""
    spec = engine.store.spec(name)
    assert spec is not None
    engine.store.record(spec, result(name, outcome, message))


@contextlib.asynccontextmanager
async def served(
    aiohttp_server: MakeServer, engine: Health, watchers: Watchers | None = None
) -> AsyncIterator[tuple[TestServer, aiohttp.ClientSession]]:
    server = await aiohttp_server(make_app(engine.views(), watchers=watchers))
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield server, session


def url(server: TestServer, path: str) -> str:
    return str(server.make_url(path))


def quiet_engine(names: tuple[str, ...] = ("db", "cache"), **top: Any) -> Health:
    """An engine whose checks never run by themselves: tests record results by hand (flap
    detection off: every flip is a transition)."""
    checks = [{"name": n, "interval": "1h", "timeout": "1s", "flapping": "off"} for n in names]
    top.setdefault("server", {"show_details": "always"})
    engine = Health(settings=settings(checks, **top))
    for name in names:
        flip(engine, name, Outcome.PASS)
    return engine


class Seen(Observer):
    """When the store recorded each transition (monotonic), to time the stream against."""

    def __init__(self) -> None:
        self.at: dict[tuple[str, str], float] = {}

    def on_transition(self, spec: SpecBase, before: CheckState, after: CheckState) -> None:
        self.at.setdefault((spec.name, after.status.value), time.monotonic())


async def test_a_port_closing_arrives_as_an_event_within_the_interval(
    aiohttp_server: MakeServer,
) -> None:
    """A tcp check against a real listener: closing it is a `check` event (fail, previous
    pass, the message) within the interval plus 50 ms of the port closing; opening it again
    is a `pass` event; every event's id is above the snapshot's."""
    port = free_port()
    listener = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
    seen = Seen()
    interval = 0.2
    checks = [
        {"name": "db", "address": f"127.0.0.1:{port}", "interval": "200ms", "timeout": "100ms"}
    ]
    engine = Health(settings=settings(checks, server={"show_details": "always"}), observers=[seen])
    engine.start()
    try:
        async with (
            served(aiohttp_server, engine) as (server, session),
            Stream(session, url(server, "/watch")) as stream,
        ):
            assert stream.status == 200
            assert stream.response is not None
            assert stream.response.headers["Content-Type"].startswith("text/event-stream")
            snapshot = await stream.next()
            assert snapshot.kind == "snapshot"
            assert snapshot.id is not None
            if snapshot.data["checks"]["db"]["status"] != "pass":
                await stream.until("check", name="db", status="pass")
            listener.close()
            await listener.wait_closed()
            closed = time.monotonic()
            event = await stream.until("check", name="db", status="fail")
            assert event.data["previous"] == "pass"
            assert event.data["message"] == "connection refused"
            assert event.id is not None
            assert event.id > snapshot.id
            assert event.data["at"].endswith("Z")
            # From the store recording the transition to the reader: the stream's own
            # cost (the 50 ms the issue allows, plus slack for a loaded machine).
            delivery = event.at - seen.at[("db", "fail")]
            assert 0 <= delivery < 0.15, delivery
            # From the port closing: at most one interval (+10 % jitter) plus that.
            assert event.at - closed < interval * 1.1 + 0.1 + 0.15, event.at - closed
            group = await stream.until("group", name="readiness", state="unhealthy")
            assert group.data["previous"] == "healthy"
            listener = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
            back = await stream.until("check", name="db", status="pass", timeout=5)
            assert back.data["previous"] == "fail"
            assert back.id is not None
            assert back.id > event.id
    finally:
        listener.close()
        await engine.stop()


async def test_resume_with_last_event_id_loses_nothing(aiohttp_server: MakeServer) -> None:
    """A reader that reconnects with Last-Event-ID gets every event it missed, in order,
    with consecutive ids and no snapshot."""
    engine = quiet_engine()
    async with served(aiohttp_server, engine) as (server, session):
        async with Stream(session, url(server, "/watch")) as stream:
            assert (await stream.next()).kind == "snapshot"
            flip(engine, "db", Outcome.FAIL, "down 1")
            first = await stream.until("check", name="db")
            assert first.data["status"] == "fail"
            last = first
            with contextlib.suppress(TimeoutError):
                while True:
                    last = await stream.next(timeout=0.3)
        assert last.id is not None
        for i in range(10):  # missed while disconnected
            flip(engine, "cache", Outcome.FAIL if i % 2 == 0 else Outcome.PASS, f"cache {i}")
            flip(engine, "db", Outcome.PASS if i % 2 == 0 else Outcome.FAIL, f"db {i}")
        headers = {"Last-Event-ID": str(last.id)}
        async with Stream(session, url(server, "/watch"), headers) as stream:
            missed = []
            with contextlib.suppress(TimeoutError):
                while True:
                    missed.append(await stream.next(timeout=0.5))
    assert missed, "nothing replayed"
    assert all(m.kind in ("check", "group") for m in missed), [m.kind for m in missed]
    ids = [m.id for m in missed]
    assert ids == list(range(last.id + 1, last.id + 1 + len(ids)))
    checks = [(m.data["name"], m.data["message"]) for m in missed if m.kind == "check"]
    expected = [(n, f"{n} {i}") for i in range(10) for n in ("cache", "db")]
    assert checks == expected


async def test_resume_from_an_id_no_longer_held_starts_with_a_snapshot(
    aiohttp_server: MakeServer,
) -> None:
    """An id older than the 1,000-event ring, or from another run, gets a fresh snapshot;
    an unreadable one is a 400."""
    engine = quiet_engine()
    async with served(aiohttp_server, engine) as (server, session):
        async with Stream(session, url(server, "/watch")) as stream:
            old = await stream.next()
        for i in range(700):
            flip(engine, "db", Outcome.FAIL if i % 2 == 0 else Outcome.PASS)
        assert old.id is not None
        for since in (str(old.id), "12", "1"):  # fell behind; another run's ids
            async with Stream(session, url(server, "/watch"), {"Last-Event-ID": since}) as s:
                fresh = await s.next()
                assert fresh.kind == "snapshot", since
                assert fresh.id is not None
                assert fresh.id > old.id
                assert fresh.data["checks"]["db"]["status"] == "pass"
        for bad in ("abc", "-5", "1" * 40):
            async with session.get(url(server, "/watch"), headers={"Last-Event-ID": bad}) as r:
                assert r.status == 400, bad
                assert "Last-Event-ID" in (await r.json())["error"]


async def test_filters_pick_groups_and_checks(aiohttp_server: MakeServer) -> None:
    """`?group=` gives that group's events and its members'; `?check=` that check's only;
    an unknown group or check is a 400."""
    engine = quiet_engine(("db", "cache", "batch"), groups={"readiness": {"exclude": ["batch"]}})
    async with served(aiohttp_server, engine) as (server, session):
        streams = {
            "liveness": Stream(session, url(server, "/watch?group=liveness")),
            "readiness": Stream(session, url(server, "/watch?group=readiness")),
            "db": Stream(session, url(server, "/watch?check=db")),
        }
        async with contextlib.AsyncExitStack() as stack:
            for s in streams.values():
                await stack.enter_async_context(s)
            heads = {k: await s.next() for k, s in streams.items()}
            assert list(heads["liveness"].data["groups"]) == ["liveness"]
            assert set(heads["liveness"].data["checks"]) == {"loop"}
            assert set(heads["readiness"].data["checks"]) == {"db", "cache"}
            assert heads["db"].data["groups"] == {}
            assert list(heads["db"].data["checks"]) == ["db"]
            flip(engine, "batch", Outcome.FAIL)
            flip(engine, "cache", Outcome.FAIL)
            flip(engine, "db", Outcome.FAIL)
            got: dict[str, list[tuple[str, str]]] = {}
            for key, s in streams.items():
                got[key] = []
                with contextlib.suppress(TimeoutError):
                    while True:
                        m = await s.next(timeout=0.4)
                        got[key].append((m.kind, m.data["name"]))
    assert got["liveness"] == []
    # cache (critical) takes readiness to unhealthy; db failing too changes nothing more
    assert got["readiness"] == [("check", "cache"), ("group", "readiness"), ("check", "db")]
    assert got["db"] == [("check", "db")]
    async with served(aiohttp_server, engine) as (server, session):
        for query in ("group=nope", "check=nope", "group=readiness&check=nope"):
            async with session.get(url(server, f"/watch?{query}")) as r:
                assert r.status == 400, query
                assert "nope" in (await r.json())["error"]


async def test_details_only_with_the_token(aiohttp_server: MakeServer) -> None:
    """Without the token (`when_authorized`) the stream carries group states only: no
    check name or message anywhere in it, and `?check=` is refused; with it, both."""
    engine = quiet_engine(server={"token": TOKEN, "show_details": "when_authorized"})
    async with served(aiohttp_server, engine) as (server, session):
        async with (
            session.get(url(server, "/watch")) as anonymous,
            Stream(session, url(server, "/watch"), BEARER) as authorised,
        ):
            head = await authorised.next()
            assert set(head.data["checks"]) == {"db", "cache", "loop"}
            flip(engine, "db", Outcome.FAIL, "secret-ish failure text")
            event = await authorised.until("check", name="db")
            assert event.data["message"] == "secret-ish failure text"
            raw = b""
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    while True:
                        raw += await anonymous.content.readany()
        text = raw.decode()
        assert "event: snapshot" in text
        assert "event: group" in text
        assert '"readiness"' in text
        assert "event: check" not in text
        assert "db" not in text
        assert "secret-ish" not in text
        assert "checks" not in text
        async with session.get(url(server, "/watch?check=db")) as r:
            assert r.status == 403
        async with session.get(url(server, "/watch?check=db"), headers=BEARER) as r:
            assert r.status == 200
    never = quiet_engine(server={"token": TOKEN, "show_details": "never"})
    async with (
        served(aiohttp_server, never) as (server, session),
        Stream(session, url(server, "/watch"), BEARER) as stream,
    ):
        assert "checks" not in (await stream.next()).data


async def test_a_comment_keeps_an_idle_stream_open(aiohttp_server: MakeServer) -> None:
    """With nothing to say, the stream writes a comment line every `keepalive` seconds."""
    engine = quiet_engine()
    async with served(aiohttp_server, engine) as (server, session):
        server.app[WATCH].keepalive, server.app[WATCH].tick = 0.3, 0.05
        async with Stream(session, url(server, "/watch")) as stream:
            assert (await stream.next()).kind == "snapshot"
            started = time.monotonic()
            comment = await stream.next(timeout=3, comments=True)
            assert comment.kind == "comment"
            assert comment.data == "keep-alive"
            assert 0.25 <= comment.at - started < 1.5
    assert WATCH in server.app


async def test_the_limit_is_max_watchers_then_503(aiohttp_server: MakeServer) -> None:
    """`server.max_watchers` streams open; one more is a 503; a reader that leaves gives
    its slot back within a tick."""
    engine = quiet_engine(server={"show_details": "always", "max_watchers": 3})
    watchers = Watchers(3)
    async with served(aiohttp_server, engine, watchers) as (server, session):
        server.app[WATCH].tick = 0.1
        streams = [Stream(session, url(server, "/watch")) for _ in range(3)]
        for s in streams:
            await s.__aenter__()
            assert (await s.next()).kind == "snapshot"
        assert watchers.open["sse"] == 3
        async with session.get(url(server, "/watch")) as r:
            assert r.status == 503
            assert "max_watchers" in (await r.json())["error"]
        await streams[0].__aexit__()
        async with asyncio.timeout(5):
            while watchers.open["sse"] != 2:
                await asyncio.sleep(0.02)
        async with Stream(session, url(server, "/watch")) as again:
            assert again.status == 200
            assert watchers.open["sse"] == 3
        for s in streams[1:]:
            await s.__aexit__()


async def test_head_is_headers_only(aiohttp_server: MakeServer) -> None:
    """HEAD /watch answers the stream's headers at once and takes no slot."""
    engine = quiet_engine()
    async with served(aiohttp_server, engine) as (server, session):
        async with session.head(url(server, "/watch")) as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/event-stream")
        assert server.app[WATCH].watchers.open["sse"] == 0


async def test_the_default_limit_is_64(aiohttp_server: MakeServer) -> None:
    """64 streams at the default limit, the 65th refused."""
    engine = quiet_engine()
    assert engine.settings.server.max_watchers == 64
    async with (
        served(aiohttp_server, engine) as (server, session),
        contextlib.AsyncExitStack() as stack,
    ):
        for _ in range(64):
            s = await stack.enter_async_context(Stream(session, url(server, "/watch")))
            assert s.status == 200
        async with session.get(url(server, "/watch")) as r:
            assert r.status == 503


def slow_reader(port: int) -> socket.socket:
    """A raw client with a tiny receive window that asks for /watch and does not read."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /watch HTTP/1.1\r\nHost: x\r\n\r\n")
    sock.setblocking(False)
    return sock


async def read_all(sock: socket.socket, timeout: float) -> bytes:
    loop, data = asyncio.get_running_loop(), b""
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(timeout):
            while chunk := await loop.sock_recv(sock, 65536):
                data += chunk
    return data


async def test_a_reader_behind_the_ring_is_dropped_and_blocks_nobody(
    aiohttp_server: MakeServer,
) -> None:
    """A reader that stops reading holds up neither the store nor another reader; once it
    reads again past a ring it could not keep, its stream ends with `dropped`."""
    engine = quiet_engine()
    long = "x" * 1500  # fills the slow reader's buffers in far fewer events than the ring
    async with served(aiohttp_server, engine) as (server, session):
        assert server.port is not None
        sock = slow_reader(server.port)
        try:
            async with Stream(session, url(server, "/watch?check=db")) as fast:
                assert (await fast.next()).kind == "snapshot"
                async with asyncio.timeout(5):
                    while (
                        engine.store.ring.last_id == 0 or server.app[WATCH].watchers.open["sse"] < 2
                    ):
                        await asyncio.sleep(0.01)
                got: list[str] = []

                async def read_fast() -> None:
                    while len(got) < 3000:
                        got.append((await fast.next(timeout=10)).data["message"].split()[0])

                reader = asyncio.create_task(read_fast())
                for batch in range(30):  # paced by the fast reader, never by the slow one
                    started = time.monotonic()
                    for i in range(batch * 100, batch * 100 + 100):
                        outcome = Outcome.FAIL if i % 2 == 0 else Outcome.PASS
                        flip(engine, "db", outcome, f"{i} {long}")
                    assert time.monotonic() - started < 0.5  # recording never waits on readers
                    async with asyncio.timeout(10):
                        while len(got) < batch * 100 + 100 and not reader.done():
                            await asyncio.sleep(0.005)
                await asyncio.wait_for(reader, 10)
                assert got == [str(i) for i in range(3000)]
            # reading again, with a wider window so the backlog drains fast on a loaded machine
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            data = (await read_all(sock, 30)).decode(errors="replace")
        finally:
            sock.close()
    assert "event: dropped" in data
    assert "fell behind" in data
    assert data.rstrip().endswith("0") or "0\r\n\r\n" in data  # the chunked stream ended


async def test_a_reader_whose_writes_stall_is_dropped(aiohttp_server: MakeServer) -> None:
    """A reader that never reads is dropped once a write waits `stall` seconds: its slot
    is free again and its connection closed."""
    engine = quiet_engine()
    long = "y" * 30_000  # the kernel takes up to 4 MB (tcp_wmem) before a write waits
    async with served(aiohttp_server, engine) as (server, _session):
        assert server.port is not None
        server.app[WATCH].stall, server.app[WATCH].tick = 0.5, 0.05
        watchers = server.app[WATCH].watchers
        sock = slow_reader(server.port)
        try:
            async with asyncio.timeout(5):
                while watchers.open["sse"] < 1:
                    await asyncio.sleep(0.01)
            started = time.monotonic()  # no write can stall before the first event
            for i in range(300):  # 900 events, ~9 MB: more than the buffers, less than the ring
                flip(engine, "db", Outcome.FAIL if i % 2 == 0 else Outcome.PASS, f"{i} {long}")
                await asyncio.sleep(0)
            produced = time.monotonic()
            async with asyncio.timeout(5):
                while watchers.open["sse"]:
                    await asyncio.sleep(0.01)
            dropped = time.monotonic()
            assert dropped - started >= 0.5  # not before a write waited `stall`
            assert dropped - produced < 0.5 + 1.5  # and not long after
            await read_all(sock, 3)  # and the connection ends (reset or EOF), never hangs
        finally:
            sock.close()


@pytest.mark.parametrize("kind", ["check", "group"])
def test_frames_are_one_line_of_json(kind: str) -> None:
    """A message with newlines still makes one `data:` line (JSON escapes them)."""
    from healthd.web.watch import _frame

    frame = _frame(kind, {"name": "db", "message": "line one\nline two\r\n"}, 7).decode()
    assert frame.startswith(f"id: 7\nevent: {kind}\ndata: ")
    assert frame.endswith("\n\n")
    assert frame.count("\n") == 4


DRAIN_CONFIG = """
server: {listen: '127.0.0.1:{port}', show_details: always}
defaults: {interval: 200ms, timeout: 100ms}
shutdown: {drain_delay: 1s, grace: 10s}
checks:
  - {name: self, kind: tcp, address: '127.0.0.1:{port}'}
"""


async def test_sigterm_ends_every_stream_with_draining_at_the_listener_close(
    tmp_path: Path,
) -> None:
    """A real `healthd run` and a real SIGTERM: every stream sees readiness go `draining`
    at once, stays open through `drain_delay`, gets a final `draining` event and ends when
    the listeners close (the logged time), not after `grace`; the daemon exits 0 without
    waiting for grace. healthd_watchers{transport="sse"} counted them meanwhile."""
    async with Healthd(tmp_path, DRAIN_CONFIG) as daemon, aiohttp.ClientSession() as session:
        streams = [Stream(session, daemon.url("/watch")) for _ in range(3)]
        async with contextlib.AsyncExitStack() as stack:
            for s in streams:
                await stack.enter_async_context(s)
                assert (await s.next()).kind == "snapshot"
            async with session.get(daemon.url("/metrics")) as r:
                assert 'healthd_watchers{transport="sse"} 3.0' in await r.text()
            daemon.signal(signal.SIGTERM)
            signalled = time.monotonic()
            ends = await asyncio.gather(*(s.rest(timeout=8) for s in streams))
            code = await daemon.wait(timeout=8)
            exited = time.monotonic()
    assert code == 0
    closed_line = next(line for line in daemon.lines if "listeners closed at" in line)
    closed_wall = datetime.fromisoformat(closed_line.split("listeners closed at ")[1].split(";")[0])
    for s, events in zip(streams, ends, strict=True):
        kinds = [e.kind for e in events]
        assert kinds[-1] == "draining", kinds
        draining = [e for e in events if e.kind == "group" and e.data["state"] == "draining"]
        assert {e.data["name"] for e in draining} >= {"readiness", "health"}
        assert draining[0].at - signalled < 0.5  # at once
        assert s.closed_at is not None
        lasted = s.closed_at - signalled
        assert 0.9 <= lasted < 1.0 + 1.5, lasted  # open through drain_delay, closed at the close
        final_at = datetime.fromisoformat(events[-1].data["at"])
        assert abs((final_at - closed_wall).total_seconds()) < 0.5
    assert exited - signalled < 1.0 + 3.0  # grace (10 s) was never held


async def test_closing_the_event_source_never_swallows_a_cancellation() -> None:
    """The handler's clean-up closes its event source; cancelled while that close waits,
    the cancellation goes on up (the task ends cancelled), and an error closing is dropped."""
    from healthd.web.watch import _aclose

    closing = asyncio.Event()

    class Slow:
        def __aiter__(self) -> Slow:
            return self

        async def __anext__(self) -> Any:
            raise StopAsyncIteration

        async def aclose(self) -> None:
            closing.set()
            await asyncio.sleep(10)

    class Broken(Slow):
        async def aclose(self) -> None:
            raise RuntimeError("aclose(): asynchronous generator is already running")

    task = asyncio.create_task(_aclose(Slow()))
    await closing.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    await _aclose(Broken())  # no error
