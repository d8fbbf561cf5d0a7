"""schemathesis against a live `healthd run`: no 5xx, every answer as config/openapi.json says,
no traceback in the daemon's log.

One daemon serves the module (probe listener and admin listener, with a token); each API
operation is fuzzed in its own test, with and without the bearer token. Examples are
derandomized so the suite is deterministic; set HEALTHD_FUZZ_EXAMPLES (e.g. 2000) and
HEALTHD_FUZZ_RANDOM=1 for a longer, exploratory run.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok

from tests.conftest import free_port
from tests.procs import Healthd

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parent.parent
DOCUMENT = json.loads((ROOT / "config" / "openapi.json").read_text())
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)
OPERATIONS = {r.ok().label: r.ok() for r in SCHEMA.get_all_operations() if isinstance(r, Ok)}
TOKEN = "fuzz-token-7f3a"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
NAMES = ["loop", "db", "beat", "self", None]  # real check names, or whatever was generated
EXAMPLES = int(os.environ.get("HEALTHD_FUZZ_EXAMPLES", "50"))
CHECKS = [  # not_a_server_error is replaced by no_server_error: 503 is a probe's answer
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
LOG_ERRORS = ("Traceback", "Error handling request")
CONFIG = """
server:
  listen: '127.0.0.1:{port}'
  admin_listen: '127.0.0.1:{admin_port}'
  token: %(token)s
  show_details: when_authorized
deadline: {default: 500ms, max: 2s}
defaults: {interval: 1s, timeout: 200ms}
shutdown: {drain_delay: 0s, grace: 1s}
checks:
  - {name: loop, kind: loop}
  - {name: db, kind: tcp, address: '127.0.0.1:%(refused)d'}
  - {name: beat, kind: heartbeat, ttl: 30s, critical: false}
  - {name: self, kind: tcp, address: '127.0.0.1:{port}', mode: on_demand, critical: false}
"""
T = TypeVar("T")
Case = schemathesis.Case[APIOperation[Any, Any, Any, Any]]


class Daemon:
    """A `Healthd` whose event loop runs in a thread, so the (blocking) fuzzing runs in the
    test's own thread while the daemon's stderr keeps being read."""

    def __init__(self, directory: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        config = CONFIG % {"token": TOKEN, "refused": free_port()}
        self.healthd = Healthd(directory, config)
        self.session = requests.Session()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def base_url(self, path: str) -> str:
        admin = path.startswith(("/admin", "/heartbeat"))
        return (self.healthd.admin_url if admin else self.healthd.url)("")

    def log_errors(self) -> list[str]:
        return [line for line in list(self.healthd.lines) if any(e in line for e in LOG_ERRORS)]

    def close(self) -> None:
        self.session.close()
        try:
            self.run(self.healthd.__aexit__(None, None, None))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    daemon = Daemon(tmp_path_factory.mktemp("fuzz"))
    try:
        daemon.run(daemon.healthd.start())
        yield daemon
    finally:
        daemon.close()


def no_server_error(case: Case, response: schemathesis.Response) -> None:
    """No 5xx, except the 503 a probe answers for a failing group (documented, and held to
    the document by status_code_conformance)."""
    code = response.status_code
    assert code < 500 or (code == 503 and not case.path.startswith(("/admin", "/heartbeat"))), (
        f"{code} for {case.method} {case.formatted_path}: {response.text[:300]}"
    )


def status_only_without_authority(case: Case, response: schemathesis.Response) -> None:
    """A probe answer to a caller without the token carries `status` and nothing else."""
    if case.path.startswith(("/admin", "/heartbeat", "/metrics")):
        return
    content_type = response.headers.get("content-type", [""])[0]
    if response.status_code in (200, 503) and content_type.startswith("application/json"):
        assert list(response.json()) == ["status"], response.text


def fuzz(daemon: Daemon, label: str, mode: GenerationMode) -> list[int]:
    """Run the operation's examples against the daemon; return the status codes it answered."""
    operation = OPERATIONS[label]
    sent: list[int] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,  # each request has its own timeout below; hypothesis's is load-flaky
        derandomize=not os.environ.get("HEALTHD_FUZZ_RANDOM"),
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(
        case=operation.as_strategy(generation_mode=mode),
        name=st.sampled_from(NAMES),
        authorised=st.booleans(),
    )
    def examples(case: Case, name: str | None, authorised: bool) -> None:
        if name is not None and "check" in (case.path_parameters or {}):
            case.path_parameters = {**(case.path_parameters or {}), "check": name}
        headers = case.headers
        headers.pop("Authorization", None)  # case-insensitive: the token is ours to give
        headers.update(BEARER if authorised else {})
        response = case.call(
            base_url=daemon.base_url(case.path), session=daemon.session, timeout=5.0
        )
        sent.append(response.status_code)
        no_server_error(case, response)
        case.validate_response(response, checks=CHECKS)
        if not authorised:
            if case.path.startswith(("/admin", "/heartbeat")):
                assert response.status_code == 401, response.text
            status_only_without_authority(case, response)

    examples()
    return sent


def _cases() -> list[tuple[str, GenerationMode]]:
    """Every operation in both modes, but negative only where there is something to break.
    Streams (`x-healthd-stream`: /watch) never end, so a request-per-example fuzzer cannot
    read them; tests/test_watch.py covers them, their 400s included."""
    return [
        (label, mode)
        for label, op in OPERATIONS.items()
        for mode in GenerationMode
        if mode is GenerationMode.POSITIVE or "parameters" in op.definition.raw
        if not op.definition.raw.get("x-healthd-stream")
    ]


@pytest.mark.parametrize(("label", "mode"), _cases(), ids=[f"{a}-{m.value}" for a, m in _cases()])
def test_operation(daemon: Daemon, label: str, mode: GenerationMode) -> None:
    """Generated requests to one operation, with and without the token: no 5xx, answers
    as the document says, status-only without authority, a clean log."""
    codes = fuzz(daemon, label, mode)
    many = "parameters" in OPERATIONS[label].definition.raw
    assert len(codes) >= (min(EXAMPLES, 10) if many else 2)
    if label.split()[1].startswith(("/admin", "/heartbeat")):
        assert 401 in codes, codes  # without the token
        assert set(codes) - {401}, codes  # and with it
    elif mode is GenerationMode.POSITIVE:
        assert {200, 503} & set(codes), codes
    else:
        assert 400 in codes, codes
    assert daemon.healthd.proc is not None
    assert daemon.healthd.proc.returncode is None, "\n".join(daemon.healthd.lines[-20:])
    assert daemon.log_errors() == []


def test_fresh_must_be_a_known_value(daemon: Daemon) -> None:
    """`?fresh=maybe` is a 400 like every other bad parameter, not taken as fresh."""
    response = daemon.session.get(daemon.healthd.url("/readyz?fresh=maybe"), timeout=5)
    assert response.status_code == 400, response.text
    assert list(response.json()) == ["error"]
