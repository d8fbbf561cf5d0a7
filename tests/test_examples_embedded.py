"""examples/aiohttp_app.py runs as printed: an aiohttp service whose PostgreSQL pool is
checked by readiness and closed by a cleanup hook after the drain."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import free_port
from tests.embedding import EmbeddedApp

pytestmark = pytest.mark.slow
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "aiohttp_app.py"
DSN = "postgresql://postgres@127.0.0.1:5432/test"


async def status_of(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def until_status(url: str, want: int, text: str = "", timeout: float = 10.0) -> str:
    end = time.monotonic() + timeout
    seen: tuple[int, str] = (0, "")
    while time.monotonic() < end:
        seen = await status_of(url)
        if seen[0] == want and text in seen[1]:
            return seen[1]
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url}: {seen} after {timeout}s, wanted {want}")


@pytest.mark.service("postgres")
async def test_the_aiohttp_example_serves_drains_and_closes_its_pool_by_a_hook() -> None:
    """Ready once the pool answers; the app's route queries the database; SIGTERM: 503 at
    once while / still answers, then the db.close hook runs and the exit line names it."""
    async with EmbeddedApp(script=EXAMPLE, env={"DATABASE_URL": DSN}) as app:
        await until_status(app.url("/readyz"), 200)
        status, body = await status_of(app.url("/"))
        assert status == 200
        assert int(body) >= 1
        app.signal()
        await app.line("SIGTERM: draining")
        assert (await status_of(app.url("/readyz")))[0] == 503
        assert (await status_of(app.url("/")))[0] == 200
        assert await app.wait() == 0
        line = app.exit_line()
        assert "hooks db.close " in line
        assert "db.close 0." in line
        assert "(failed" not in line
        assert "(timed out)" not in line


async def test_the_aiohttp_example_is_not_ready_while_its_database_is_down() -> None:
    """A database that refuses: the app starts, /readyz is 503, /livez 200."""
    dsn = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    async with EmbeddedApp(script=EXAMPLE, env={"DATABASE_URL": dsn}) as app:
        await until_status(app.url("/readyz/db"), 503)  # the check named in the URL fails
        assert (await status_of(app.url("/readyz")))[0] == 503
        assert (await status_of(app.url("/livez")))[0] == 200
