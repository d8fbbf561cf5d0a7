"""The suite's own limits: a hung test fails in bounded time instead of holding CI."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_every_test_runs_under_a_timeout(request: pytest.FixtureRequest) -> None:
    """pytest-timeout is active with the limit set in pyproject.toml."""
    assert request.config.pluginmanager.hasplugin("timeout")
    assert float(request.config.getini("timeout")) == 120


def test_a_hung_test_fails_in_bounded_time(tmp_path: Path) -> None:
    """A test that never returns is failed at the limit (2 s here), and says it timed out."""
    (tmp_path / "test_hang.py").write_text(
        "import asyncio\n\nasync def test_hangs():\n    await asyncio.Event().wait()\n"
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"),
         "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), "-o", "timeout=2", str(tmp_path / "test_hang.py")],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    took = time.monotonic() - started
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Timeout" in done.stdout, done.stdout
    assert 2 <= took < 30, took
