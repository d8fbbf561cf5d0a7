"""An aiohttp service with healthd embedded (DESIGN §17): its PostgreSQL pool is checked by
readiness and closed by a cleanup hook once the requests have drained.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test PORT=8080 python examples/aiohttp_app.py

    GET /             how many connections the database has (one query through the pool)
    GET /readyz ...   the probes (healthd.aiohttp.setup); SIGTERM drains in order
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

import healthd.aiohttp
from healthd import Deadline, Health, checks


class Database:
    """The app's pool: opened at start-up, checked by readiness, closed by a hook."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.pool: asyncpg.Pool | None = None

    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        """cleanup_ctx, before healthd's: the pool is open when the checks start."""
        # min_size=0: the app starts while the database is down; readiness says so.
        self.pool = await asyncpg.create_pool(self.dsn, min_size=0, max_size=5)
        health.on_stop(self.close, name="db.close", timeout="5s")  # after the drain
        yield

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def ping(self, deadline: Deadline) -> str:
        if self.pool is None:
            raise RuntimeError("the pool is not open yet")
        async with self.pool.acquire(timeout=deadline.remaining()) as conn:
            await conn.fetchval("SELECT 1", timeout=deadline.remaining())
        return f"pool {self.pool.get_size()} connections"


db = Database(os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"))
health = Health(
    checks=[checks.Func("db", db.ping, interval="1s", timeout="500ms")],
    shutdown={"drain_delay": "2s", "grace": "10s"},
)


async def connections(request: web.Request) -> web.Response:
    assert db.pool is not None
    count = await db.pool.fetchval("SELECT count(*) FROM pg_stat_activity")
    return web.Response(text=f"{count}\n")


def main() -> None:
    app = web.Application()
    app.add_routes([web.get("/", connections)])
    app.cleanup_ctx.append(db.lifespan)
    healthd.aiohttp.setup(app, health)
    healthd.aiohttp.run_app(app, health, port=int(os.environ.get("PORT", "8080")))


if __name__ == "__main__":
    main()
