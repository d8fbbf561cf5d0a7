"""The command line: help, validate, schema, run, check (Nagios exit codes) and probe, as real
processes; the probe's deadline against a real aiohttp server that hangs."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.helpers import http_server
from tests.procs import Healthd
from tests.test_lifecycle import wait_ready

ROOT = Path(__file__).parent.parent
INVALID = ROOT / "tests" / "data" / "config" / "invalid-timeout-not-below-interval.yaml"


def healthd(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "healthd", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "healthd.yaml"
    path.write_text(text)
    return str(path)


def test_validate_bad_file_exits_2_with_one_line() -> None:
    """`healthd validate` on a bad file: exit 2, one line naming file:line and path."""
    done = healthd("validate", "-c", str(INVALID))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"healthd: {INVALID}:5: checks[0].timeout: must be shorter than interval"
        " (timeout 20s, interval 10s)"
    ]
    assert "Traceback" not in done.stderr


def test_validate_every_error_line_is_prefixed(tmp_path: Path) -> None:
    """Several problems: one line each, and every line starts with `healthd:`, with a
    "did you mean" for a misspelled key and the expected form of an address."""
    text = "server:\n  listen: 8099\nchecks:\n  - {name: a, kind: loop, intervall: 5s}\n"
    path = write(tmp_path, text)
    done = healthd("validate", "-c", path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f'healthd: {path}:2: server.listen: expected host:port, e.g. "0.0.0.0:8099" (got 8099)',
        f"healthd: {path}:4: checks[0].intervall: unknown key (did you mean `interval`?)",
    ]


def test_validate_good_file() -> None:
    """`healthd validate` on the example config exits 0."""
    done = healthd("validate", "-c", str(ROOT / "config" / "healthd.yaml"))
    assert done.returncode == 0, done.stderr


def test_validate_missing_file() -> None:
    """A missing file is a one-line error, exit 2."""
    done = healthd("validate", "-c", "/nonexistent/healthd.yaml")
    assert done.returncode == 2
    assert "cannot read" in done.stderr


def test_schema_prints_json_schema() -> None:
    """`healthd schema` prints the JSON Schema of the config."""
    done = healthd("schema")
    schema = json.loads(done.stdout)
    assert "checks" in schema["properties"]


@pytest.mark.parametrize(
    ("checks", "code", "state"),
    [
        ([("a", "loop", True)], 0, "healthy"),
        ([("a", "loop", True), ("b", "refused", False)], 1, "degraded"),
        ([("a", "loop", True), ("b", "refused", True)], 2, "unhealthy"),
    ],
)
def test_check_exit_codes(
    tmp_path: Path, refused_port: int, checks: list[tuple[str, str, bool]], code: int, state: str
) -> None:
    """`healthd check` exits 0 healthy, 1 degraded, 2 unhealthy (Nagios)."""
    lines = ["checks:"]
    for name, what, critical in checks:
        lines.append(f"  - name: {name}\n    critical: {str(critical).lower()}")
        if what == "loop":
            lines.append("    kind: loop")
        else:
            lines.append(f"    kind: tcp\n    address: '127.0.0.1:{refused_port}'")
    done = healthd("check", "-c", write(tmp_path, "\n".join(lines)), "--json")
    assert done.returncode == code, done.stderr
    assert json.loads(done.stdout)["status"] == state


def test_check_unknown_exit_3(tmp_path: Path) -> None:
    """A config healthd cannot use makes `healthd check` answer UNKNOWN (3), as Nagios expects."""
    done = healthd("check", "-c", str(INVALID))
    assert done.returncode == 3
    assert "checks[0].timeout" in done.stderr


def test_check_verbose_text(tmp_path: Path, refused_port: int) -> None:
    """Without --json, `healthd check` prints the verbose lines."""
    cfg = f"checks:\n  - {{name: db, kind: tcp, address: '127.0.0.1:{refused_port}'}}\n"
    done = healthd("check", "-c", write(tmp_path, cfg), "--timeout", "500ms")
    assert done.returncode == 2
    assert "[-]db failed: connection refused" in done.stdout.splitlines()


def test_check_bad_timeout(tmp_path: Path) -> None:
    """A malformed --timeout is a one-line usage error (UNKNOWN, 3)."""
    done = healthd("check", "--timeout", "soon")
    assert done.returncode == 3
    assert "--timeout" in done.stderr


def test_help_says_what_healthd_is() -> None:
    """`healthd --help` opens with one sentence about healthd and shows examples."""
    done = healthd("--help")
    assert done.returncode == 0
    description = done.stdout.split("\n\n")[1]
    assert description.startswith("healthd checks a service's dependencies")
    assert description.count(".") == 1  # one sentence
    assert "healthd run -c healthd.yaml" in done.stdout
    assert "healthd check --group readiness" in done.stdout
    assert "argv" not in done.stdout


def many_checks(tmp_path: Path, refused_port: int, count: int) -> str:
    lines = ["checks:"]
    lines += [
        f"  - {{name: c{i}, kind: tcp, address: '127.0.0.1:{refused_port}'}}" for i in range(count)
    ]
    return write(tmp_path, "\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("unbuffered", "code"), [("", 2), ("1", 1)], ids=["buffered", "unbuffered"]
)
def test_check_json_into_a_pipe_closed_before_it_writes(
    tmp_path: Path, refused_port: int, unbuffered: str, code: int
) -> None:
    """The reader is gone before the answer is written: no traceback. Buffered, the pipe
    breaks at the final flush and the Nagios code (2, unhealthy) stays; unbuffered
    (PYTHONUNBUFFERED), it breaks inside the command, which then exits 1."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env |= {"PYTHONUNBUFFERED": unbuffered} if unbuffered else {}
    read, written = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "healthd", "check", "-c", many_checks(tmp_path, refused_port, 1),
             "--json"],
            stdout=written, stderr=subprocess.PIPE, text=True, timeout=30, check=False, env=env,
        )  # fmt: skip
    finally:
        os.close(written)
    assert done.stderr == ""
    assert done.returncode == code


def test_check_json_piped_into_head(tmp_path: Path, refused_port: int) -> None:
    """`healthd check --json | head -c 10` on an answer bigger than the pipe: the reader hangs
    up mid-answer; healthd exits 1 quietly, without a BrokenPipeError traceback."""
    config = many_checks(tmp_path, refused_port, 400)  # ~100 KB of JSON, above a 64 KiB pipe
    proc = subprocess.Popen(
        [sys.executable, "-m", "healthd", "check", "-c", config, "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stderr is not None
    head = proc.stdout.read(10)
    proc.stdout.close()  # what `head -c 10` does once it has its bytes
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=30) == 1, stderr
    assert head == b'{"status":'
    assert stderr == ""


DEFAULT_RUN = r"""
import http.client, subprocess, sys
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
proc = subprocess.Popen([sys.executable, "-m", "healthd", "run"], stderr=subprocess.PIPE, text=True)
for line in proc.stderr:
    print(line.rstrip(), file=sys.stderr, flush=True)
    if "listening on" in line:
        conn = http.client.HTTPConnection("127.0.0.1", 8099, timeout=10)
        conn.request("GET", "/livez?fresh=1&verbose")
        response = conn.getresponse()
        print(response.status, response.read().decode(), sep="\n")
        break
proc.kill()
proc.wait()
"""


@pytest.mark.slow
def test_run_without_config_serves_the_packaged_default() -> None:
    """`healthd run` with no -c serves the packaged default: /livez 200 on 127.0.0.1:8099.

    It runs in a network namespace of its own (`unshare -rn`), so the default's fixed port
    is free whatever else runs on this machine."""
    done = subprocess.run(
        ["unshare", "-rn", sys.executable, "-c", DEFAULT_RUN],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "listening on 127.0.0.1:8099" in done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stdout.splitlines()  # no HEALTHD_TOKEN: the check names are withheld
    assert lines[0] == "200", done.stdout
    assert lines[1].startswith("checks withheld: send the bearer token"), done.stdout
    assert lines[2] == "livez check passed", done.stdout


def test_check_group_liveness(tmp_path: Path, refused_port: int) -> None:
    """`--group liveness` evaluates the loop checks only: healthy (0) beside a dead database."""
    cfg = f"checks:\n  - {{name: db, kind: tcp, address: '127.0.0.1:{refused_port}'}}\n"
    cfg += "  - {name: loop, kind: loop}\n"
    path = write(tmp_path, cfg)
    done = healthd("check", "-c", path, "--group", "liveness", "--json")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert (body["status"], body["group"], list(body["checks"])) == (
        "healthy",
        "liveness",
        ["loop"],
    )
    assert healthd("check", "-c", path, "--group", "readyz").returncode == 2  # endpoint names too


def test_check_unknown_group(tmp_path: Path) -> None:
    """An unknown --group is a one-line usage error, UNKNOWN (3)."""
    done = healthd("check", "-c", write(tmp_path, "checks: []\n"), "--group", "bogus")
    assert done.returncode == 3
    assert done.stderr.splitlines() == [
        "healthd: --group: unknown group 'bogus' (readiness, liveness, startup, health)"
    ]


def test_check_exits_3_when_a_critical_result_is_not_fresh(
    tmp_path: Path, blackhole: tuple[str, int]
) -> None:
    """A critical check whose result is older than its max_age when the answer is given is
    unknown, and so is the group: exit 3. Here `fast` passes at once (max_age 20ms) while
    `slow` hangs for 400 ms on a connect nobody accepts."""
    host, port = blackhole
    cfg = "checks:\n  - {name: fast, kind: loop, interval: 20ms, timeout: 10ms, max_age: 20ms}\n"
    cfg += f"  - {{name: slow, kind: tcp, address: '{host}:{port}', timeout: 400ms,"
    cfg += " critical: false}\n"
    done = healthd("check", "-c", write(tmp_path, cfg), "--json")
    assert done.returncode == 3, done.stdout + done.stderr
    body = json.loads(done.stdout)
    assert body["status"] == "unknown"
    assert (body["checks"]["fast"]["status"], body["checks"]["slow"]["status"]) == (
        "unknown", "timeout",
    )  # fmt: skip


class Server:
    """A real aiohttp server: /ok answers 200, /down 503, /hang never answers and records
    when each request arrived and when its client hung up."""

    def __init__(self) -> None:
        self.hangs: list[tuple[float, float, str]] = []  # (arrived, gone, X-Request-Timeout-Ms)

    async def hang(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        try:
            await asyncio.sleep(30)
        finally:  # cancelled when the client disconnects (handler_cancellation)
            self.hangs.append(
                (arrived, time.monotonic(), request.headers.get("X-Request-Timeout-Ms", ""))
            )
        return web.Response()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/ok", ok)
        app.router.add_get("/down", down)
        app.router.add_get("/hang", self.hang)
        return app


async def ok(_: web.Request) -> web.Response:
    return web.Response(status=200)


async def down(_: web.Request) -> web.Response:
    return web.Response(status=503)


@pytest.fixture
async def server() -> AsyncIterator[tuple[Server, str]]:
    state = Server()
    async with http_server(state.app(), handler_cancellation=True) as (port,):
        yield state, f"http://127.0.0.1:{port}"


async def probe(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(healthd, "probe", *args)


@pytest.mark.slow
async def test_probe_exit_codes(server: tuple[Server, str], refused_port: int) -> None:
    """`healthd probe` exits 0 on a 200, 1 on a 503 and on a refused port, 2 on a bad URL."""
    _, base = server
    assert (await probe(f"{base}/ok")).returncode == 0
    assert (await probe(f"{base}/down")).returncode == 1
    assert (await probe(f"http://127.0.0.1:{refused_port}/livez")).returncode == 1
    assert (await probe("ftp://x/")).returncode == 2


@pytest.mark.slow
async def test_probe_timeout_against_a_server_that_hangs(server: tuple[Server, str]) -> None:
    """`--timeout 300ms` against a server that never answers: exit 1, and the server sees the
    client hang up 300 ms after the request (not before 250 ms, not after 1 s); the budget
    goes out as X-Request-Timeout-Ms."""
    state, base = server
    done = await probe(f"{base}/hang", "--timeout", "300ms")
    assert done.returncode == 1
    assert "timed out" in done.stderr
    await asyncio.sleep(0.05)  # the server's side of the hang-up
    [(arrived, gone, budget)] = state.hangs
    assert 0.25 <= gone - arrived <= 1.0, gone - arrived
    assert budget == "300"


@pytest.mark.slow
@pytest.mark.parametrize(("loop", "used"), [("", "asyncio"), ("uvloop", "uvloop")])
async def test_run_on_either_event_loop(tmp_path: Path, loop: str, used: str) -> None:
    """`healthd run` runs on asyncio's loop unless HEALTHD_EVENT_LOOP=uvloop asks for
    uvloop; both serve probes and run checks."""
    config = "server: {listen: '127.0.0.1:{port}', show_details: always}\nchecks:\n"
    config += "  - {name: loop, kind: loop, interval: 100ms, timeout: 50ms}\n"
    env = {"HEALTHD_EVENT_LOOP": loop}
    async with Healthd(tmp_path, config, env=env) as daemon:
        await wait_ready(daemon, "/readyz")
        assert f"event loop: {used}" in "\n".join(daemon.lines)
        assert healthd("probe", daemon.url("/readyz?fresh=1")).returncode == 0
