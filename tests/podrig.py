"""Two pods behind a real HAProxy, one terminated under load (DESIGN §16's proof); shared by
tests/test_pod_shutdown.py (short) and bench/pod_shutdown.py (1,000 connections).

A pod is an aiohttp app (tests/pod_app.py) and a healthd whose `web` check GETs the app.
HAProxy sends the traffic to the apps and health-checks each pod through its healthd's
/readyz. wrk drives HAProxy; mid-run pod 1 is terminated as the kubelet does it:

    naive       the app and its healthd sidecar both get SIGTERM at the same instant
    supervised  `healthd run -- app`: healthd alone gets SIGTERM and stops the app after
                drain_delay
    embedded    one process: the app with healthd embedded (healthd.aiohttp); HAProxy
                health-checks the app's own /readyz

A request fails if wrk saw a non-2xx answer or a socket error (connect, read, write,
timeout). Everything is on loopback; each run is bounded in time.
"""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests import haproxy as lb
from tests.haproxy import more_files, wait_listening

ROOT = Path(__file__).resolve().parent.parent
APP = Path(__file__).with_name("pod_app.py")
MODES = ("naive", "supervised", "embedded")
# HAProxy's view of a pod: a /readyz every 500 ms, down after 2 failures, as a load
# balancer a little quicker than kube-proxy; drain_delay must outlast that.
CHECK = "inter 500ms fall 2 rise 2"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(slots=True)
class Pod:
    """One app and its healthd (two processes, or healthd supervising the app)."""

    directory: Path
    name: str
    mode: str
    drain: float
    app_port: int = field(default_factory=free_port)
    health_port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    log: Path | None = None

    def __post_init__(self) -> None:
        if self.mode == "embedded":
            self.health_port = self.app_port  # the probes are the app's own routes

    def start(self) -> None:
        if self.mode == "embedded":
            self._start_embedded()
            return
        config = self.directory / f"{self.name}.yaml"
        config.write_text(
            f"""
server: {{listen: "127.0.0.1:{self.health_port}"}}
shutdown: {{drain_delay: {self.drain}s, grace: 3s, stop_timeout: 10s}}
checks:
  - {{name: web, kind: http, url: "http://127.0.0.1:{self.app_port}/", interval: 1s,
     timeout: 500ms, startup: true}}
"""
        )
        self.log = self.directory / f"{self.name}.log"
        out = self.log.open("ab")
        app = [sys.executable, str(APP), str(self.app_port)]
        healthd = [sys.executable, "-m", "healthd", "run", "-c", str(config)]
        spawn = {"stdout": out, "stderr": out, "stdin": subprocess.DEVNULL, "cwd": ROOT}
        if self.mode == "naive":
            self.procs["app"] = subprocess.Popen(app, preexec_fn=more_files, **spawn)  # type: ignore[call-overload]
            self.procs["healthd"] = subprocess.Popen(healthd, **spawn)  # type: ignore[call-overload]
        else:
            argv = [*healthd, "--", *app]
            self.procs["healthd"] = subprocess.Popen(argv, preexec_fn=more_files, **spawn)  # type: ignore[call-overload]
        out.close()
        wait_listening(self.app_port)
        wait_listening(self.health_port)

    def _start_embedded(self) -> None:
        self.log = self.directory / f"{self.name}.log"
        with self.log.open("ab") as out:
            app = [sys.executable, str(APP), str(self.app_port), "--embedded", str(self.drain)]
            self.procs["app"] = subprocess.Popen(
                app, preexec_fn=more_files, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                cwd=ROOT,
            )  # fmt: skip
        wait_listening(self.app_port)

    def terminate(self) -> None:
        """As the kubelet: SIGTERM to every container's first process at the same instant."""
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> dict[str, int | None]:
        codes: dict[str, int | None] = {}
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                codes[name] = None
        return codes

    def stop(self) -> None:
        """Whatever still runs: SIGTERM (a supervised app goes with its healthd), then KILL."""
        if any(p.poll() is None for p in self.procs.values()):
            self.terminate()
            self.wait(self.drain + 15)
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


@dataclass(slots=True)
class Result:
    mode: str
    connections: int
    requests: int = 0
    non2xx: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # connect, read, write, timeout
    codes: dict[str, int | None] = field(default_factory=dict)  # pod 1's exit codes
    stopped_s: float = 0.0  # SIGTERM → pod 1's last process gone
    wrk: str = ""

    @property
    def failed(self) -> int:
        return self.non2xx + sum(self.errors.values())


def haproxy_config(port: int, stats: Path, pods: list[Pod]) -> str:
    servers = "\n".join(
        f"  server {p.name} 127.0.0.1:{p.app_port} check port {p.health_port}" for p in pods
    )
    return f"""
global
  maxconn 8000
  stats socket {stats} level admin
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  timeout check 1s
  retries 3
frontend front
  bind 127.0.0.1:{port}
  default_backend pods
backend pods
  balance roundrobin
  option httpchk
  http-check send meth GET uri /readyz hdr X-Request-Timeout-Ms 800
  default-server {CHECK}
{servers}
"""


def wait_up(stats: Path, names: list[str], timeout: float = 30.0) -> None:
    lb.wait_for(
        stats, "pods", lambda seen: all(seen.get(n, {}).get("status") == "UP" for n in names),
        timeout, "every pod UP",
    )  # fmt: skip


WRK_REQUESTS = re.compile(r"(\d+) requests in")
WRK_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def parse_wrk(text: str, result: Result) -> None:
    found = WRK_REQUESTS.search(text)
    if found is None:
        raise RuntimeError(f"wrk said:\n{text}")
    result.requests = int(found.group(1))
    errors = WRK_ERRORS.search(text)
    values = [int(x) for x in errors.groups()] if errors else [0, 0, 0, 0]
    result.errors = dict(zip(("connect", "read", "write", "timeout"), values, strict=True))
    non2xx = WRK_NON2XX.search(text)
    result.non2xx = int(non2xx.group(1)) if non2xx else 0


def run(
    mode: str, directory: Path, *, connections: int, duration: float, stop_at: float | None,
    drain: float, threads: int = 2, haproxy: str = "haproxy", wrk: str = "wrk",
) -> Result:  # fmt: skip
    """One run: two pods of `mode` behind HAProxy, wrk for `duration`, pod 1 terminated
    `stop_at` seconds in (None: nobody is stopped, the steady state)."""
    directory.mkdir(parents=True, exist_ok=True)
    pods = [Pod(directory, f"pod{i}", mode, drain) for i in (1, 2)]
    front, stats = free_port(), directory / "haproxy.sock"
    result = Result(mode, connections)
    with contextlib.ExitStack() as stack:
        for pod in pods:
            stack.callback(pod.stop)  # after HAProxy is gone (last in, first out)
            pod.start()
        stack.enter_context(lb.running(haproxy, directory, haproxy_config(front, stats, pods)))
        wait_listening(front)
        wait_up(stats, [p.name for p in pods])
        load = subprocess.Popen(
            [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--timeout", "5s",
             f"http://127.0.0.1:{front}/"],
            preexec_fn=more_files, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        if stop_at is not None:
            time.sleep(stop_at)
            signalled = time.monotonic()
            pods[0].terminate()
            result.codes = pods[0].wait(timeout=drain + 20)
            result.stopped_s = time.monotonic() - signalled
        out, _ = load.communicate(timeout=duration + 30)
        result.wrk = out.decode(errors="replace")
        parse_wrk(result.wrk, result)
    return result
