"""The packaged default config: `healthd run` with no file works anywhere, its listen
address comes from HEALTHD_LISTEN (what the Docker image sets) and its token from
HEALTHD_TOKEN (what the README's `?verbose` sample uses)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from healthd.config import load_settings
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]


def test_default_listens_on_loopback_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    """No HEALTHD_LISTEN: 127.0.0.1:8099; with it, that address."""
    monkeypatch.delenv("HEALTHD_LISTEN", raising=False)
    assert load_settings().server.listen == "127.0.0.1:8099"
    monkeypatch.setenv("HEALTHD_LISTEN", "0.0.0.0:9000")
    assert load_settings().server.listen == "0.0.0.0:9000"


def test_the_image_listens_on_every_address() -> None:
    """The Dockerfile sets HEALTHD_LISTEN so a published port reaches the daemon."""
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    assert "ENV HEALTHD_LISTEN=0.0.0.0:8099" in lines
    assert "EXPOSE 8099" in lines


@pytest.mark.slow
async def test_run_with_no_file_serves_the_default_config() -> None:
    """`healthd run` (no -c) on HEALTHD_LISTEN answers /livez 200 and stops on SIGTERM."""
    port = free_port()
    env = {**os.environ, "HEALTHD_LISTEN": f"127.0.0.1:{port}"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "healthd", "run", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        status, end = 0, time.monotonic() + 15
        async with aiohttp.ClientSession() as session:
            while status != 200 and time.monotonic() < end:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/livez") as resp:
                        status = resp.status
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.1)
        assert status == 200
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.slow
async def test_healthd_token_turns_on_details_and_the_admin_api() -> None:
    """`HEALTHD_TOKEN=… healthd run` (no file): `?verbose` with the token names every check,
    without it withholds them; the admin API listens on HEALTHD_ADMIN_LISTEN."""
    port, admin = free_port(), free_port()
    env = {**os.environ, "HEALTHD_LISTEN": f"127.0.0.1:{port}",
           "HEALTHD_ADMIN_LISTEN": f"127.0.0.1:{admin}", "HEALTHD_TOKEN": "s3cret"}  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "healthd", "run", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    auth = {"Authorization": "Bearer s3cret"}
    try:
        log: list[str] = []
        while not any(f"127.0.0.1:{admin}" in x for x in log):
            line = (await asyncio.wait_for(proc.stderr.readline(), 15)).decode()
            assert line, log
            log.append(line)
        assert not any("admin API off" in x for x in log)
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}/readyz?verbose&fresh=1"
            async with session.get(url, headers=auth) as resp:
                lines = (await resp.text()).splitlines()
            assert [x.split()[0] for x in lines[:-1]] == ["[+]loop", "[+]disk", "[+]dns"]
            assert lines[-1] == "readyz check passed"
            async with session.get(url) as resp:
                assert "checks withheld" in (await resp.text())
            async with session.get(f"http://127.0.0.1:{admin}/admin/state", headers=auth) as r:
                assert r.status == 200
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
