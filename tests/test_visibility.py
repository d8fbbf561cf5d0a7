"""Check names are details (issue 21, decided as Spring does): without the bearer token no
body names a check (`?verbose`, JSON, /status, /watch); with it every view names them all.
A per-check path answers for the name in its URL (200/503, 404 when not in the group), as
a Kubernetes probe of `/readyz/db` needs; /metrics labels carry names too (docs say so)."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.procs import Healthd

NAME = "orders-primary-db"
CONFIG = """server: {listen: '127.0.0.1:{port}', admin_listen: '127.0.0.1:{admin_port}',
         token: s3cret}
checks:
  - {name: loop, kind: loop}
  - {name: %s, kind: tcp, address: '127.0.0.1:%d'}
"""


async def read(session: aiohttp.ClientSession, url: str, **kw: object) -> tuple[int, str]:
    async with session.get(url, **kw) as resp:  # type: ignore[arg-type]
        if "watch" in url:
            await resp.content.readuntil(b"\n\n")  # `retry: …`
            text = (await resp.content.readuntil(b"\n\n")).decode()  # the snapshot event
        else:
            text = await resp.text()
        return resp.status, text


async def test_names_only_with_the_token(tmp_path: Path, refused_port: int) -> None:
    """No token: no view names the check; the token: each does."""
    async with (
        Healthd(tmp_path, CONFIG % (NAME, refused_port)) as h,
        aiohttp.ClientSession() as session,
    ):
        views = ["/readyz?verbose&fresh=1", "/readyz", "/health", "/status", "/watch"]
        for path in views:
            status, text = await read(session, h.url(path))
            assert status in (200, 503), path
            assert NAME not in text, path
            assert "loop" not in text.replace("healthd", ""), path
        auth = {"Authorization": "Bearer s3cret"}
        for path in views:
            _, text = await read(session, h.url(path), headers=auth)
            assert NAME in text, path


async def test_a_per_check_path_answers_for_its_name(tmp_path: Path, refused_port: int) -> None:
    """`/readyz/<name>` answers by that check's status without a token; an unknown name is
    404 (so a mistyped probe path is seen, not taken for a failing dependency)."""
    async with (
        Healthd(tmp_path, CONFIG % (NAME, refused_port)) as h,
        aiohttp.ClientSession() as session,
    ):
        assert (await read(session, h.url("/readyz/loop?fresh=1")))[0] == 200
        assert (await read(session, h.url(f"/readyz/{NAME}?fresh=1")))[0] == 503
        assert (await read(session, h.url("/readyz/nope")))[0] == 404
