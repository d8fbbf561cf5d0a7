"""argv → commands: run, check, validate, schema, openapi, probe (reference §9)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from healthd import __version__
from healthd.errors import CommandError, ConfigError

ABOUT = """\
healthd checks a service's dependencies under propagated deadlines and serves the verdict
as Kubernetes probes, Prometheus metrics and OpenTelemetry traces.

examples:
  healthd run -c healthd.yaml                serve /livez, /readyz, /health and /metrics
  healthd run -c healthd.yaml -- gunicorn app:app   run the app too, and stop it after the drain
  healthd check --group readiness            one evaluation, Nagios exit code (0/1/2/3)
  healthd probe http://127.0.0.1:8099/readyz --timeout 500ms
"""
CONFIG_HELP = "the YAML config file (default: $HEALTHD_CONFIG, else the packaged default config)"
T = TypeVar("T")
NAGIOS = {"healthy": 0, "degraded": 1, "unhealthy": 2, "unknown": 3, "draining": 2}


def _settings(path: str | None):  # type: ignore[no-untyped-def]
    from healthd.config import load_settings

    return load_settings(path)


def _config(args: argparse.Namespace) -> str | None:
    """`-c FILE`, else `$HEALTHD_CONFIG` (so a Docker HEALTHCHECK finds the same file as
    `run`), else None: the packaged default."""
    return getattr(args, "config", None) or os.environ.get("HEALTHD_CONFIG") or None


def cmd_run(args: argparse.Namespace) -> int:
    from healthd.lifecycle import Daemon

    args.config = _config(args)
    settings = _settings(args.config)
    from healthd.observers.log import configure

    configure(settings.logging)
    shell = None
    if args.argv:  # `-- CMD ARGS…`: supervise it (reference §16)
        from healthd.supervise import Supervisor, resolve

        resolve(args.argv)  # CommandError (127/126) before anything listens
        shell = Supervisor(args.argv)
        settings = shell.configure(settings)
    daemon = Daemon(settings, Path(args.config) if args.config else None, shell=shell)
    return run_loop(daemon.run_and_exit())  # never returns: run_and_exit ends the process


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)`, or on uvloop with `HEALTHD_EVENT_LOOP=uvloop` (the `speed` extra).

    uvloop halves the CPU of a tcp check run (bench/scale.py) but is not the default: its
    subprocesses are forked where grpcio's fork handlers run, and `exec` children of a
    daemon that also runs `grpc` checks were seen dying of SIGSEGV/SIGABRT under load.
    """
    log = logging.getLogger("healthd")
    if os.environ.get("HEALTHD_EVENT_LOOP", "") == "uvloop":
        try:
            import uvloop
        except ImportError:
            log.warning("HEALTHD_EVENT_LOOP=uvloop, but uvloop is not installed: asyncio")
        else:
            log.info("event loop: uvloop")
            return uvloop.run(main)
    log.info("event loop: asyncio")
    return asyncio.run(main)


def cmd_check(args: argparse.Namespace) -> int:
    from healthd.deadline import Deadline
    from healthd.durations import human_duration, parse_duration
    from healthd.groups import ENDPOINTS, GROUPS
    from healthd.health import Health
    from healthd.web import render

    settings = _settings(_config(args))
    group = ENDPOINTS.get(args.group, args.group)
    if group not in GROUPS:
        raise ConfigError(f"--group: unknown group {args.group!r} ({', '.join(GROUPS)})")
    try:
        budget = parse_duration(args.timeout) if args.timeout else settings.deadline.default
    except ValueError as exc:
        raise ConfigError(f"--timeout: {exc}") from None
    margin = settings.deadline.margin
    if budget < 2 * margin:  # the checks get what is left after the margin: say so
        print(
            f"healthd: --timeout {human_duration(budget)} leaves the checks"
            f" {human_duration(max(budget - margin, 0.0))}: deadline.margin"
            f" ({human_duration(margin)}) is kept back to write the answer",
            file=sys.stderr,
        )

    async def once() -> int:
        health = Health(settings=settings)
        try:
            snapshot = await health.evaluate(group, Deadline.within(budget, margin), fresh=True)
        finally:
            await health.stop()
        code = NAGIOS[snapshot.state.value]
        if args.json:  # one document a line, as pipelines expect; --pretty for people
            view = render.snapshot_view(snapshot, details=True)
            print(json.dumps(view, indent=2 if args.pretty else None))
        else:  # the last line agrees with the exit code: passed only for 0 and 1
            sys.stdout.write(render.render_verbose(snapshot, group, code <= 1, details=True))
        return code

    return asyncio.run(once())


def cmd_validate(args: argparse.Namespace) -> int:
    settings = _settings(args.config)
    print(f"{args.config}: ok ({len(settings.checks)} checks)")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from healthd.config import Settings

    print(json.dumps(Settings.model_json_schema(), indent=2, sort_keys=True))
    return 0


def cmd_openapi(args: argparse.Namespace) -> int:
    from healthd.openapi import document

    print(json.dumps(document(), indent=2))
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    """Tiny stdlib client for exec probes and Docker HEALTHCHECK: 0 on 2xx/3xx in time.
    A bare path (`/livez`) goes to the configured `server.listen`."""
    import http.client
    import urllib.parse

    from healthd.durations import parse_duration

    try:
        timeout = parse_duration(args.timeout)
    except ValueError as exc:
        raise ConfigError(f"--timeout: {exc}") from None
    target = args.url
    if target.startswith("/"):
        target = _listen_url(_settings(_config(args)).server.listen) + target
    url = urllib.parse.urlsplit(target)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ConfigError(f"probe: {args.url!r} is not an http(s) URL or a path such as /livez")
    conn_type = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    conn = conn_type(url.hostname, url.port, timeout=timeout)
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    try:
        conn.request("GET", path, headers={"X-Request-Timeout-Ms": str(int(timeout * 1000))})
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        print(f"probe: {target}: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    print(f"probe: {target}: {status}")
    return 0 if 200 <= status < 400 else 1


def _listen_url(listen: str) -> str:
    """`http://host:port` that reaches a `server.listen` address from the same host: the
    wildcard addresses (`0.0.0.0`, `::`, empty) are reached on loopback."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="healthd", description=ABOUT, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    top.add_argument("--version", action="version", version=f"healthd {__version__}")
    sub = top.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="serve probes, metrics and the admin API")
    run.add_argument("-c", "--config", help=CONFIG_HELP)
    run.add_argument(
        "argv", nargs="*", metavar="-- CMD ARGS",
        help="run CMD as healthd's child: on SIGTERM drain first, then stop it",
    )  # fmt: skip
    run.set_defaults(func=cmd_run)
    check = sub.add_parser(
        "check", help="one evaluation; Nagios exit codes 0/1/2/3",
        description="Run every check of a group once, now, and print the verdict. Exit code "
        "(Nagios): 0 healthy, 1 degraded, 2 unhealthy or draining, 3 unknown or a bad config.",
    )  # fmt: skip
    check.add_argument("-c", "--config", help=CONFIG_HELP)
    check.add_argument(
        "--group", default="readiness", metavar="GROUP",
        help="readiness (default), liveness, startup or health; or an endpoint name "
        "(readyz, livez, startupz)",
    )  # fmt: skip
    check.add_argument("--json", action="store_true", help="print the snapshot as JSON, one line")
    check.add_argument("--pretty", action="store_true", help="with --json: indented")
    check.add_argument(
        "--timeout", metavar="DURATION",
        help="the whole budget, e.g. 2s (default: deadline.default); deadline.margin "
        "(20ms by default) of it is kept back to write the answer",
    )  # fmt: skip
    check.set_defaults(func=cmd_check)
    validate = sub.add_parser("validate", help="check a config file; exit 2 on error")
    validate.add_argument("-c", "--config", required=True, help="the YAML config file to check")
    validate.set_defaults(func=cmd_validate)
    schema = sub.add_parser("schema", help="print the config's JSON Schema")
    schema.set_defaults(func=cmd_schema)
    openapi = sub.add_parser("openapi", help="print the OpenAPI 3.1 document of the HTTP APIs")
    openapi.set_defaults(func=cmd_openapi)
    probe = sub.add_parser("probe", help="GET a URL; exit 0 on 2xx/3xx within the timeout")
    probe.add_argument(
        "url", help="e.g. http://127.0.0.1:8099/readyz; a bare path (/livez) goes to the "
        "config's server.listen",
    )  # fmt: skip
    probe.add_argument("-c", "--config", help=CONFIG_HELP + " (for a bare path)")
    probe.add_argument(
        "--timeout", default="1s", metavar="DURATION",
        help="give up after this long (default: 1s); sent on as X-Request-Timeout-Ms",
    )  # fmt: skip
    probe.set_defaults(func=cmd_probe)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code = 1  # if the pipe breaks before the command has its answer
    try:
        code = _dispatch(args)
        sys.stdout.flush()  # a broken pipe shows here, while it can still be caught
    except BrokenPipeError:
        # The reader went away (`healthd check --json | head -1`): nothing more to say.
        # Point stdout at /dev/null so the interpreter's own flush at exit is silent too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return code


def _dispatch(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args))
    except ConfigError as exc:  # one problem a line, each a line of its own for grep
        for line in str(exc).splitlines() or [""]:
            print(f"healthd: {line}", file=sys.stderr)
        return 3 if args.command == "check" else 2  # a Nagios plugin says UNKNOWN (3)
    except CommandError as exc:  # `run -- CMD`: as a shell says it, with its exit code
        print(f"healthd: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
