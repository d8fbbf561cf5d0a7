"""The Docker build (issue 21): `.dockerignore` keeps `.venv`, `.git` and caches out of the
context, and the image's HEALTHCHECK probes the address the config listens on, run here as
the exact command the Dockerfile gives, against a real daemon."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port

ROOT = Path(__file__).parent.parent


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent directories
    wins; `!` re-includes; `*` stays within one path segment, `**` spans segments."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern.removeprefix("!").strip("/")
        regex = re.escape(body).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            verdict = not negate
    return verdict


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [x.strip() for x in lines if x.strip() and not x.lstrip().startswith("#")]


@pytest.mark.parametrize(
    "path",
    [".venv/bin/python", ".git/HEAD", ".mypy_cache/x.json", "tests/test_cli.py",
     "bench/results/scale.md", "healthd/__pycache__/cli.cpython-311.pyc", ".pytest_cache/v"],
)  # fmt: skip
def test_dockerignore_keeps_out(path: str) -> None:
    """The virtualenv, the git history, caches, tests and benchmarks stay out of the context."""
    assert ignored(path, dockerignore())


def test_dockerignore_sends_what_the_dockerfile_copies() -> None:
    """Every file a `COPY` (not `--from`) names is sent, and the whole package with it."""
    text = (ROOT / "Dockerfile").read_text()
    sources = [
        src.rstrip("*")
        for line in text.splitlines()
        if line.startswith("COPY ") and "--from" not in line
        for src in line.split()[1:-1]
    ]
    assert sources
    package = [str(p.relative_to(ROOT)) for p in (ROOT / "healthd").rglob("*") if p.is_file()]
    for path in [*sources, *[p for p in package if "__pycache__" not in p]]:
        assert not ignored(path, dockerignore()), path


def healthcheck() -> list[str]:
    """The HEALTHCHECK's command (exec form), as Docker runs it."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    (line,) = [x for x in text.splitlines() if x.startswith("HEALTHCHECK ")]
    command: list[str] = json.loads(line.split(" CMD ", 1)[1])
    return command


def test_healthcheck_does_not_hard_code_the_address() -> None:
    """No host or port in the HEALTHCHECK: `healthd probe /livez` asks the config."""
    command = healthcheck()
    assert command[:3] == ["healthd", "probe", "/livez"]
    assert not any(re.search(r"\d+\.\d+\.\d+\.\d+|:\d+|localhost", part) for part in command)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[dict[str, str], int]]:
    """`healthd run` as the image runs it (HEALTHD_CONFIG, no -c), on a port of its own."""
    port = free_port()
    config = tmp_path / "healthd.yaml"
    config.write_text(
        f"server: {{listen: '0.0.0.0:{port}'}}\nchecks:\n  - {{name: a, kind: loop}}\n"
    )
    env = {**os.environ, "HEALTHD_CONFIG": str(config)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "healthd", "run"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    try:
        for line in proc.stderr:
            if "listening on" in line:
                break
        yield env, port
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        proc.stderr.close()


def probe(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "healthd", *command[1:]]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, check=False)


def test_healthcheck_probes_the_configured_address(daemon: tuple[dict[str, str], int]) -> None:
    """The HEALTHCHECK command reaches a daemon listening on 0.0.0.0:<another port> through
    HEALTHD_CONFIG; with HEALTHD_LISTEN (the packaged default's variable) too."""
    env, port = daemon
    done = probe(healthcheck(), env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"probe: http://127.0.0.1:{port}/livez: 200"
    env = {k: v for k, v in env.items() if k != "HEALTHD_CONFIG"}
    assert probe(healthcheck(), {**env, "HEALTHD_LISTEN": f"0.0.0.0:{port}"}).returncode == 0
    wrong = probe(healthcheck(), {**env, "HEALTHD_LISTEN": f"127.0.0.1:{free_port()}"})
    assert wrong.returncode == 1
    assert "Connection refused" in wrong.stderr


def test_probe_a_path_reaches_ipv6_wildcard(tmp_path: Path) -> None:
    """`listen: "[::]:P"` is probed on ::1 (a bracketed host in the URL), refused here."""
    port = free_port()
    config = tmp_path / "v6.yaml"
    config.write_text(f"server: {{listen: '[::]:{port}'}}\n")
    started = time.monotonic()
    done = probe(["healthd", "probe", "/livez", "-c", str(config)], dict(os.environ))
    assert done.returncode == 1
    assert f"http://[::1]:{port}/livez" in done.stderr
    assert time.monotonic() - started < 20
