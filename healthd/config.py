"""YAML file → Settings (reference §4): the models every key validates against.

Errors are one line each, `file:line: path: why`, e.g.
`healthd.yaml:14: checks[2].timeout: must be shorter than interval`; configfile.py reads
the file with its lines and maps pydantic's error locations back to them.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import signal
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from healthd import configfile, dependencies
from healthd.checks import CheckSpec
from healthd.checks.base import FlapOrOff, FlapSettings, Model, SpecBase
from healthd.checks.func import FuncSpec
from healthd.checks.loop import LoopSpec
from healthd.checks.process import ProcessSpec
from healthd.durations import Duration
from healthd.errors import ConfigError, install
from healthd.fleet.settings import FleetSettings
from healthd.groups import CONFIGURABLE, Membership
from healthd.model import State

DEFAULT_CONFIG = Path(__file__).with_name("default.yaml")
_LISTEN = r"^(\[[0-9a-fA-F:.]+\]|[^:\s\[\]]*):\d{1,5}$"
IMPLICIT_LOOP_NAMES = ("loop", "event-loop", "healthd-loop")  # the first one not taken
IMPLICIT_APP_NAMES = ("app", "app-process", "healthd-app")  # supervised (§16): the same rule
# Signals that stop or continue a process, or that it ignores by default: never an end.
NOT_STOP_SIGNALS = ("SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGCONT", "SIGCHLD", "SIGURG")

DEFAULT_STATUS_CODES = {
    State.HEALTHY: 200,
    State.DEGRADED: 200,
    State.UNHEALTHY: 503,
    State.UNKNOWN: 503,
    State.DRAINING: 503,
}


class ServerSettings(Model):
    listen: str = Field(default="0.0.0.0:8099", pattern=_LISTEN)
    admin_listen: str = Field(default="127.0.0.1:8098", pattern=_LISTEN)
    token: SecretStr = SecretStr("")
    show_details: Literal["never", "when_authorized", "always"] = "when_authorized"
    status_codes: dict[State, int] = Field(default_factory=lambda: dict(DEFAULT_STATUS_CODES))
    keepalive_timeout: Duration = 75.0
    max_watchers: int = Field(default=64, ge=1, le=100_000)  # open /watch + gRPC Watch streams
    watch_keepalive: Duration = Field(default=15.0, gt=0)  # /watch: a comment after this silence
    grpc_listen: str | None = Field(default=None, pattern=_LISTEN)  # gRPC health; off when unset
    # HAProxy agent-check (reference §18): one line per TCP connection; off when unset.
    agent_listen: str | None = Field(default=None, pattern=_LISTEN)
    agent_degraded_weight: int = Field(default=50, ge=0, le=256)  # `up ready <w>%` when degraded

    @field_validator("status_codes")
    @classmethod
    def _codes(cls, codes: dict[State, int]) -> dict[State, int]:
        for state, code in codes.items():
            if not 200 <= code <= 599:
                raise ValueError(f"{state.value}: {code} is not an HTTP status code (200-599)")
        return {**DEFAULT_STATUS_CODES, **codes}

    @field_validator("grpc_listen")
    @classmethod
    def _grpc(cls, listen: str | None) -> str | None:
        if listen and any(importlib.util.find_spec(m) is None for m in ("grpc", "grpc_health")):
            raise ValueError(f"the gRPC health server needs grpcio: {install('grpc')}")
        return listen


class DeadlineSettings(Model):
    default: Duration = 2.0
    max: Duration = 30.0
    margin: Duration = 0.02
    offset: Duration = 0.5

    @model_validator(mode="after")
    def _order(self) -> Self:
        if self.default > self.max:
            raise ValueError("default: must not exceed max")
        if self.margin >= self.default:
            raise ValueError("margin: must be shorter than default")
        return self


class Defaults(Model):
    interval: Duration = 10.0
    timeout: Duration = 1.0
    failure_threshold: int = Field(default=1, ge=1, le=100)
    success_threshold: int = Field(default=1, ge=1, le=100)
    retries: int = Field(default=0, ge=0, le=10)
    retry_delay: Duration = 0.05
    fast_interval: Duration | None = None
    down_interval: Duration | None = None
    flapping: FlapOrOff = Field(default_factory=FlapSettings)


class ShutdownSettings(Model):
    drain_delay: Duration = 5.0
    grace: Duration = 20.0
    # Supervised (`healthd run -- CMD`, reference §16): what the child's process group gets
    # after drain_delay, and how long it has to exit before SIGKILL.
    stop_signal: str = Field(default="SIGTERM", examples=["SIGTERM", "SIGQUIT", "SIGINT"])
    stop_timeout: Duration = 20.0
    # Embedded in an app (reference §17): after drain_delay the app keeps accepting until no
    # request has arrived for `quiet` (bounded by grace); `deadline` bounds the whole stop,
    # signal to exit, as the orchestrator's terminationGracePeriodSeconds does.
    quiet: Duration = 0.5
    deadline: Duration = 30.0

    @field_validator("stop_signal")
    @classmethod
    def _signal(cls, name: str) -> str:
        """`SIGQUIT`, `QUIT` or `sigquit` → `SIGQUIT`; a name this system does not know, or
        one that never ends a process, is an error."""
        canonical = name.strip().upper()
        canonical = canonical if canonical.startswith("SIG") else f"SIG{canonical}"
        if canonical not in signal.Signals.__members__ or canonical.startswith("SIG_"):
            raise ValueError(f"{name!r} is not a signal name (e.g. SIGTERM, SIGQUIT, SIGINT)")
        if canonical in NOT_STOP_SIGNALS:
            raise ValueError(f"must end the process; {canonical} does not (e.g. SIGTERM, SIGQUIT)")
        return canonical

    @property
    def stop_signum(self) -> signal.Signals:
        return signal.Signals[self.stop_signal]


class GroupSettings(Model):
    include: list[str] = Field(default_factory=lambda: ["*"])
    exclude: list[str] = Field(default_factory=list)


class Groups(Model):
    readiness: GroupSettings = Field(default_factory=GroupSettings)
    liveness: GroupSettings | None = None  # None: the `loop` checks


class TracingSettings(Model):
    sample_passing: float = Field(default=1.0, ge=0.0, le=1.0)


class LoggingSettings(Model):
    format: Literal["text", "json"] = "text"
    level: Literal["debug", "info", "warning", "error"] = "info"


class Settings(Model):
    server: ServerSettings = Field(default_factory=ServerSettings)
    deadline: DeadlineSettings = Field(default_factory=DeadlineSettings)
    defaults: Defaults = Field(default_factory=Defaults)
    shutdown: ShutdownSettings = Field(default_factory=ShutdownSettings)
    groups: Groups = Field(default_factory=Groups)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    fleet: FleetSettings | None = None  # None: no fleet, nothing changes (reference §14)
    # Results kept per check (the store's history: /health?history=N, the /status strip).
    # Top-level, not per check: it sizes the store's memory (checks x history), and a
    # per-check key would be part of the check's spec, so changing it would reset its state.
    history: int = Field(default=100, ge=0, le=10_000)
    checks: list[CheckSpec] = Field(default_factory=list)

    # The `loop` check added because the config has none (reference §2), if any.
    _implicit_loop: LoopSpec | None = PrivateAttr(default=None)
    # Checks built in code that no file can hold (`checks.Func`): `settings_of` passes them.
    _in_process: list[SpecBase] = PrivateAttr(default_factory=list)
    # Supervised (§16): the `process` check added because the config has none, if any.
    _implicit_app: ProcessSpec | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _implicit(self, info: ValidationInfo) -> Self:
        """A config without a `loop` check gets one, so liveness is never empty. It joins
        liveness and /health, not readiness: the operator did not ask for it there."""
        self._in_process = list((info.context or {}).get("in_process", ()))
        if not any(c.kind == "loop" for c in self.checks):
            names = {c.name for c in self.configured}
            name = next(n for n in IMPLICIT_LOOP_NAMES if n not in names)
            spec = {"name": name, "kind": "loop"}
            self._implicit_loop = LoopSpec.model_validate(spec, context=info.context)
        return self

    def supervised(self) -> Settings:
        """These settings for `healthd run -- CMD` (§16): with an implicit `process` check
        named `app` (readiness, liveness, startup) unless the config has a `process` check."""
        if any(c.kind == "process" for c in self.checks) or self._implicit_app is not None:
            return self
        taken = {c.name for c in self.all_checks}
        name = next(n for n in IMPLICIT_APP_NAMES if n not in taken)
        defaults = self.defaults.model_dump(mode="json", exclude_none=True)
        spec = {"name": name, "kind": "process"}
        copy = self.model_copy()
        copy._implicit_app = ProcessSpec.model_validate(spec, context={"defaults": defaults})
        return copy

    @property
    def configured(self) -> list[SpecBase]:
        """The checks of the file (or of the code), in-process ones after them."""
        return [*self.checks, *self._in_process] if self._in_process else list(self.checks)

    @property
    def all_checks(self) -> list[SpecBase]:
        """The configured checks, and the implicit `loop` and `app` checks if added."""
        implicit = [c for c in (self._implicit_loop, self._implicit_app) if c is not None]
        configured = self.configured
        return [*configured, *implicit] if implicit else configured

    @model_validator(mode="after")
    def _names(self) -> Self:
        seen: set[str] = set()
        for i, check in enumerate(self.configured):
            if check.name in seen:
                raise ValueError(f"checks[{i}].name: duplicate check name {check.name!r}")
            seen.add(check.name)
        for group in CONFIGURABLE:
            spec = getattr(self.groups, group)
            for key in ("include", "exclude"):
                for j, pattern in enumerate(getattr(spec, key) if spec else ()):
                    if not any(fnmatch.fnmatchcase(n, pattern) for n in seen) and seen:
                        raise ValueError(f"groups.{group}.{key}[{j}]: {pattern!r} matches no check")
        return self

    @model_validator(mode="after")
    def _graph(self) -> Self:
        """`depends_on` names existing checks, without a cycle (reference §13)."""
        implicit = [self._implicit_loop.name] if self._implicit_loop is not None else []
        found = dependencies.problems(self.configured, implicit)
        if found:
            raise ValueError(found[0])
        return self

    def members(self, group: str) -> list[str]:
        """Names of the checks in `group` (`readiness`, `liveness`, `startup`, `health`)."""
        return list(self.membership().members[group])

    def membership(self) -> Membership:
        """Every group's members (groups.py decides; this only hands it the config)."""
        implicit = self._implicit_loop.name if self._implicit_loop is not None else None
        return Membership.of(
            self.all_checks, self.groups.readiness, self.groups.liveness, implicit=implicit
        )


# --- loading ---------------------------------------------------------------------------------


def settings_of(
    checks: Iterable[SpecBase | Mapping[str, Any]], sections: Mapping[str, Any]
) -> Settings:
    """Settings built in code (`Health(checks=[...], shutdown={...})`), validated as a file
    would be, with the same one-line errors (`checks[1].timeout: ...`). Specs built in
    code are validated again here, so `defaults=` applies to them as to a file's."""
    data: dict[str, Any] = {k: v for k, v in sections.items() if v is not None}
    in_file: list[Any] = []
    in_process: list[SpecBase] = []
    defaults = data.get("defaults") if isinstance(data.get("defaults"), Mapping) else {}
    context = {"defaults": defaults}
    for check in checks:
        if isinstance(check, FuncSpec):
            fields = {**check.model_dump(exclude_unset=True), "fn": check.fn}
            try:
                in_process.append(FuncSpec.model_validate(fields, context=context))
            except ValidationError as exc:
                raise ConfigError(configfile.in_code(exc, fields, f"checks.{check.name}")) from None
        elif isinstance(check, SpecBase):
            in_file.append({"kind": check.kind, **check.model_dump(exclude_unset=True)})
        else:
            in_file.append(dict(check))
    data["checks"] = in_file
    try:
        return Settings.model_validate(data, context={**context, "in_process": in_process})
    except ValidationError as exc:
        raise ConfigError(configfile.in_code(exc, data)) from None


def parse_settings(text: str, filename: str = "<config>") -> Settings:
    """Validate YAML text; raise ConfigError with one `file:line: path: why` line per problem."""
    try:
        return _parse(text, filename)
    except RecursionError:  # ruamel's composer and _expand recurse once per nesting level
        raise ConfigError(f"{filename}:1: invalid YAML: nested too deeply") from None


def _parse(text: str, filename: str) -> Settings:
    root, data = configfile.read(text, filename)
    defaults = data.get("defaults") if isinstance(data.get("defaults"), dict) else {}
    try:
        return Settings.model_validate(data, context={"defaults": defaults})
    except ValidationError as exc:
        raise configfile.invalid(exc, root, filename, Settings.model_json_schema()) from None


def load_settings(path: str | Path | None = None) -> Settings:
    """Read and validate a config file (the packaged default when `path` is None)."""
    file = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror or exc}") from None
    return parse_settings(text, str(file))
