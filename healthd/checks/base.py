"""The check contract, and the keys every check kind shares.

A kind is one module holding its spec (a pydantic model with `kind: Literal["..."]`)
and its implementation. `spec.build(context)` returns a `Check`: an async callable taking
the run's Deadline that returns an Observation or raises (CheckFailed for failures
it understands). The runner owns the deadline, the clock and exception mapping.

`Context` carries what the daemon owns and a few kinds read: the loop-lag monitor
(`loop`), the heartbeats posted to the store (`heartbeat`) and the supervised child
(`process`, reference §16). Built without one, a check gets a context of its own (a fresh
monitor, no heartbeats, no child).
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, Protocol, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    WithJsonSchema,
    model_validator,
)

from healthd.deadline import Deadline
from healthd.durations import Duration, Percent, format_duration
from healthd.errors import install
from healthd.flapping import Flapping
from healthd.lag import LagMonitor
from healthd.model import Beat, Observation

NAME_PATTERN = r"^[a-z0-9_-]+$"


class Check(Protocol):
    """One runnable check. Raises on failure; never catches CancelledError."""

    async def __call__(self, deadline: Deadline) -> Observation: ...


class Beats(Protocol):
    """Where heartbeats are read from (the store)."""

    def beat(self, name: str) -> Beat | None: ...


class Supervised(Protocol):
    """The process healthd runs and waits for (`healthd run -- CMD`), as checks see it."""

    @property
    def pid(self) -> int | None: ...  # None until it has started

    @property
    def uptime(self) -> float: ...  # seconds since it started

    @property
    def ended(self) -> str | None: ...  # how it ended (`exited 3`), None while it runs


class _NoBeats:
    def beat(self, name: str) -> Beat | None:
        return None


@dataclass(frozen=True, slots=True)
class Context:
    """What the daemon hands to `spec.build`: its lag monitor, its heartbeats, its clock,
    and what checks of one daemon share (instead of module-level state)."""

    lag: LagMonitor = field(default_factory=LagMonitor)
    beats: Beats = field(default_factory=_NoBeats)
    clock: Callable[[], float] = time.monotonic
    app: Supervised | None = None  # the supervised child, if healthd runs one
    # Work a run leaves going after its answer (exec's TERM → KILL), held until done; the
    # daemon waits for it at stop.
    held: set[asyncio.Task[None]] = field(default_factory=set)
    # Calls that checks share by key while they last (disk: one statvfs per path).
    pending: dict[str, Any] = field(default_factory=dict)

    def hold(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run `work` without waiting for it, holding a reference until it is done."""
        task = asyncio.get_running_loop().create_task(work, name=name)
        self.held.add(task)
        task.add_done_callback(self.held.discard)


class Model(BaseModel):
    """Config models: unknown keys are errors, values are frozen once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class FlapSettings(Model):
    """`flapping:` (docs/reference.md §13): above `high` percent of weighted outcome changes
    over the last `window` runs a check is flapping, until it falls below `low`."""

    window: int = Field(default=20, ge=2, le=100)
    high: Percent = 0.5
    low: Percent = 0.25

    @model_validator(mode="after")
    def _order(self) -> Self:
        if self.low >= self.high:
            raise ValueError("low: must be below high")
        return self

    def detector(self) -> Flapping:
        return Flapping(self.window, self.high, self.low)


def _flap_tag(value: Any) -> str:
    # Tags start upper-case so config error paths skip them (configfile._split_path, _locate).
    return "Off" if isinstance(value, str | bool) else "FlapSettings"


def _off(value: Any) -> Literal["off"]:
    if value != "off" or not isinstance(value, str):
        raise ValueError("must be off, or a mapping of window, high and low")
    return "off"


Off = Annotated[
    Literal["off"], PlainValidator(_off), WithJsonSchema({"const": "off", "type": "string"})
]

FlapOrOff = Annotated[
    Annotated[FlapSettings, Tag("FlapSettings")] | Annotated[Off, Tag("Off")],
    Discriminator(_flap_tag),
]
"""`flapping: {window: 20, high: 50%, low: 25%}`, or `flapping: off`."""


def _kind_required(schema: dict[str, Any]) -> None:
    """A kind's `kind` has a default (so `checks.Tcp(...)` needs none in code), but a file
    must say it: the schema says so too."""
    if "kind" in schema.get("properties", {}):
        required = schema.setdefault("required", [])
        if "kind" not in required:
            required.insert(0, "kind")


class SpecBase(Model):
    """Keys every check takes (reference §4). Kinds subclass this and add `kind` and their own."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, hide_input_in_errors=True, json_schema_extra=_kind_required
    )

    # Optional-extra bookkeeping: modules the kind imports lazily, and the extra providing them.
    requires: ClassVar[tuple[str, ...]] = ()
    extra: ClassVar[str] = ""
    # Modules its runs import, loaded when a check is built (`preload()`), so the first run
    # does not stall the event loop for the import (grpc alone takes ~100 ms).
    imports: ClassVar[tuple[str, ...]] = ()
    # At start, background first runs are spread out (scheduler.FIRST_RUN_SPREAD) so a
    # hundred checks do not fire at once; a kind that costs nothing may run at once.
    spread_first_run: ClassVar[bool] = True
    # One passing check of this kind, as the keys after `name` and `kind`, on a machine with
    # the usual local servers (README, tests/test_every_kind.py); `{http}`, `{grpc}` and
    # `{remote}` stand for the addresses of servers a test starts. Every kind has one.
    example: ClassVar[dict[str, Any]] = {}

    name: str = Field(pattern=NAME_PATTERN, max_length=63)
    kind: str
    critical: bool = True
    shared: bool = False  # a dependency every instance shares: the fleet's panic rule (§14)
    startup: bool = False  # one of the service's own checks: in the startup group (§16)
    interval: Duration = 10.0
    timeout: Duration = 1.0
    failure_threshold: int = Field(default=1, ge=1, le=100)
    success_threshold: int = Field(default=1, ge=1, le=100)
    max_age: Duration | None = None
    mode: Literal["background", "on_demand"] = "background"
    warn_after: Duration | None = None
    depends_on: list[str] = Field(default_factory=list, max_length=32)
    retries: int = Field(default=0, ge=0, le=10)
    retry_delay: Duration = 0.05
    fast_interval: Duration | None = None  # None: interval
    down_interval: Duration | None = None  # None: interval
    flapping: FlapOrOff = Field(default_factory=FlapSettings)

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any, info: Any) -> Any:
        """Fill unset common keys from the config's `defaults:` section (passed as context)."""
        defaults = (info.context or {}).get("defaults") if info is not None else None
        if isinstance(data, dict) and defaults:
            return {**{k: v for k, v in defaults.items() if k in cls.model_fields}, **data}
        return data

    @model_validator(mode="after")
    def _timing(self) -> Self:
        if self.interval <= 0:
            raise ValueError("interval: must be positive")
        if self.timeout <= 0:
            raise ValueError("timeout: must be positive")
        if self.timeout >= self.interval:
            raise ValueError(
                f"timeout: must be shorter than interval (timeout {format_duration(self.timeout)},"
                f" interval {format_duration(self.interval)})"
            )
        for key in ("fast_interval", "down_interval"):
            value = getattr(self, key)
            if value is not None and value <= self.timeout:
                raise ValueError(f"{key}: must be longer than timeout")
        if self.max_age is not None and self.max_age < max(self.interval, self.between_failures):
            key = "interval" if self.max_age < self.interval else "down_interval"
            raise ValueError(f"max_age: must be at least {key}")
        if self.retry_delay < 0:
            raise ValueError("retry_delay: must not be negative")
        if len(set(self.depends_on)) != len(self.depends_on):
            raise ValueError("depends_on: lists a check twice")
        if self.warn_after is not None and self.warn_after >= self.timeout:
            raise ValueError("warn_after: must be shorter than timeout")
        missing = [m for m in self.requires if importlib.util.find_spec(m) is None]
        if missing:
            raise ValueError(f"check {self.name!r} needs: {install(self.extra)}")
        return self

    @property
    def stale_after(self) -> float:
        """Age after which the last result no longer counts (unknown)."""
        if self.max_age is not None:
            return self.max_age
        return 3 * max(self.interval, self.between_failures)

    @property
    def after_change(self) -> float:
        """The delay before the run after an outcome disagreeing with the status."""
        return self.fast_interval if self.fast_interval is not None else self.interval

    @property
    def between_failures(self) -> float:
        """The delay between runs while the check is failing."""
        return self.down_interval if self.down_interval is not None else self.interval

    def flap_detector(self) -> Flapping | None:
        """A fresh flap detector for this check, or None with `flapping: off`."""
        return None if self.flapping == "off" else self.flapping.detector()

    def build(self, context: Context | None = None) -> Check:
        """The runnable check for this spec. Every kind overrides this."""
        raise NotImplementedError(self.kind)

    def preload(self) -> None:
        """Import what this kind's runs import (once per process; a no-op after)."""
        for module in self.imports:
            importlib.import_module(module)
