"""Malformed requests (issue 8.5): a 4xx, one short rate-limited line, a counter; no traceback."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import aiohttp
import pytest
from aiohttp.http_exceptions import LineTooLong

from healthd.listeners import BadRequests
from healthd.testing import ManualClock
from tests.procs import Healthd

CONFIG = """
server: {listen: "127.0.0.1:{port}"}
checks:
  - {name: loop, kind: loop, interval: 1s, timeout: 500ms}
"""
HUGE_HEADER = b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 60_000 + b"\r\n\r\n"
TLS_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40


async def raw(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), 5.0)
    finally:
        writer.close()


@pytest.mark.slow
async def test_malformed_requests_get_400_one_line_and_a_count(tmp_path: Path) -> None:
    """30 huge-header requests and 10 TLS hellos: each a 400; one short line; counted."""
    async with Healthd(tmp_path, CONFIG) as h:
        answers = [await raw(h.port, HUGE_HEADER) for _ in range(30)]
        answers += [await raw(h.port, TLS_HELLO) for _ in range(10)]
        async with aiohttp.ClientSession() as session, session.get(h.url("/metrics")) as resp:
            metrics = await resp.text()
    assert [a.split(b" ", 2)[1] for a in answers] == [b"400"] * 40
    assert "healthd_bad_requests_total 40.0" in metrics.splitlines()
    assert not [line for line in h.lines if "Traceback" in line or "Error handling" in line]
    noted = [line for line in h.lines if "bad request from 127.0.0.1" in line]
    assert len(noted) == 1  # rate-limited: one line per 10 s
    assert "LineTooLong" in noted[0]
    assert len(noted[0]) < 250


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def quiet_logger() -> tuple[logging.Logger, Lines]:
    logger = logging.Logger("test.bad")  # not registered: no global state touched
    lines = Lines()
    logger.addHandler(lines)
    return logger, lines


def test_one_line_per_period_saying_how_many_were_left_out() -> None:
    """Three in a burst: one line; ten seconds on, the next line counts the two it skipped."""
    logger, lines = quiet_logger()
    clock = ManualClock()
    bad = BadRequests(logger, every=10.0, clock=clock)
    exc = LineTooLong("Header value is too long", "8190", "61440")
    for _ in range(3):
        bad.exception("Error handling request from %s", "10.0.0.1", exc_info=exc)
    clock.advance(10.0)
    bad.exception("Error handling request from %s", "10.0.0.1", exc_info=exc)
    messages = [r.getMessage() for r in lines.records]
    assert bad.count == 4
    assert messages == [
        "bad request from 10.0.0.1: LineTooLong: Got more than 8190 bytes when reading: "
        "'Header value is too long'.",
        "bad request from 10.0.0.1: LineTooLong: Got more than 8190 bytes when reading: "
        "'Header value is too long'. (2 more in the last 10s)",
    ]
    assert all(r.exc_info is None and r.levelno == logging.WARNING for r in lines.records)


def test_a_handler_bug_keeps_its_traceback() -> None:
    """Not a malformed request (a 500): logged as aiohttp would, with the exception."""
    logger, lines = quiet_logger()
    bad = BadRequests(logger)
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        bad.exception("Unhandled exception", exc_info=exc)
    assert bad.count == 0
    [record] = lines.records
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
