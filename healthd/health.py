"""The core (reference §15): one object that owns the Settings, the Store, the runs, the
scheduler, the drain state and the observers.

    Health(checks=[...]) or Health.from_file(path)
        settings ─▶ store.configure ─▶ checks built ─▶ runs ─▶ runner ─▶ store.record
                                                      ▲
                                          scheduler ──┘  (background timers)
        evaluate(group, deadline) ─▶ runs ─▶ the group's Snapshot
        drain() / ready()         ─▶ the store's drain flag
        reload(settings)          ─▶ the one swap; `on_reload` listeners are told

It sets up nothing process-wide: no signal handler, listener, logging or OpenTelemetry
SDK. The shells do that around it (lifecycle.Daemon, the supervisor, the embedded
modes), and views get `health.views()`: the store, the evaluation and the settings in
force, never the core itself.

    async with Health(checks=[checks.Func("cache", ping)]) as health:
        snapshot = await health.evaluate("readiness", Deadline.after(0.3))
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

from opentelemetry.trace import Tracer
from prometheus_client import CollectorRegistry

from healthd import dependencies
from healthd.checks.base import Check, Context, SpecBase, Supervised
from healthd.config import Settings, load_settings, settings_of
from healthd.deadline import Clock, Deadline
from healthd.evaluator import next_delay
from healthd.events import Observer
from healthd.hooks import DEFAULT_TIMEOUT, Hooks
from healthd.lag import LagMonitor
from healthd.model import Beat, CheckResult, Snapshot
from healthd.observers.metrics import Metrics
from healthd.runs import Evaluation, Runs
from healthd.scheduler import Scheduler
from healthd.store import Store

HELD_LIMIT = 2.0  # seconds stop() waits for clean-ups runs left going (exec's TERM → KILL)

Build = Callable[[SpecBase, Context], Check]
OnReload = Callable[[Settings], None]


class Evaluate(Protocol):
    """How a view asks for an evaluation (`Runs.evaluate`)."""

    def __call__(
        self,
        group: str,
        deadline: Deadline,
        *,
        fresh: bool = False,
        exclude: Sequence[str] = (),
        only: str | None = None,
    ) -> Awaitable[Evaluation]: ...


@dataclass(frozen=True, slots=True)
class Views:
    """What a view receives from the core: the store to read, the evaluation to ask for,
    the settings in force (`settings()`, swapped by a reload) and a way to hear of reloads."""

    store: Store
    evaluate: Evaluate
    settings: Callable[[], Settings]
    on_reload: Callable[[OnReload], None]

    @property
    def clock(self) -> Clock:
        return self.store.clock

    def deadline(self, budget: float) -> Deadline:
        """A request's deadline: its budget less the margin kept back to answer."""
        return Deadline.within(budget, self.settings().deadline.margin, self.store.clock)


@dataclass(frozen=True, slots=True)
class Changes:
    """What a reload did to the checks."""

    added: list[str]
    removed: list[str]
    changed: list[str]


class Health:
    """Checks, their state and the drain state of one service (reference §15)."""

    def __init__(
        self,
        checks: Iterable[SpecBase | Mapping[str, Any]] = (),
        *,
        settings: Settings | None = None,
        tracer: Tracer | None = None,
        registry: CollectorRegistry | None = None,
        metrics: Metrics | None = None,
        observers: Sequence[Observer] = (),
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
        lag: LagMonitor | None = None,
        build: Build | None = None,
        app: Supervised | None = None,
        **sections: Any,
    ) -> None:
        """Built from `settings`, or from `checks` (specs such as `checks.Tcp(...)`,
        `checks.Func(...)`, or mappings as in YAML) and top-level `sections` (`shutdown=`,
        `deadline=`, `defaults=`, ...), validated as a file would be (ConfigError)."""
        if settings is None:
            settings = settings_of(checks, sections)
        elif sections or checks:
            raise TypeError("Health: pass settings, or checks and sections, not both")
        self._settings = settings
        self.build = build or _build  # tests inject FakeChecks here
        self.lag = lag or LagMonitor()
        self.clock = clock
        self.metrics = metrics if metrics is not None else Metrics(registry)
        self.observers: list[Observer] = [self.metrics, *observers]
        self.store = Store(clock, wall, self.observers, history=settings.history)
        self.metrics.bind(self.store, self.lag)
        self.context = Context(self.lag, self.store, clock, app)  # app: the supervised child
        self.runs = Runs(self.store, tracer=tracer, clock=clock, wall=wall)
        self.scheduler = Scheduler(self.runs.start, clock, self._next_delay)
        self.hooks = Hooks(clock)  # cleanup hooks (§17): the embedded shells run them
        self._listeners: list[OnReload] = []
        self._running = False
        self._configure(settings)

    @classmethod
    def from_file(cls, path: str | Path | None = None, **options: Any) -> Health:
        """A Health running the checks of a YAML file (None: the packaged default)."""
        return cls(settings=load_settings(path), **options)

    # --- what it owns -----------------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        """The settings in force (one object; a reload swaps it here and nowhere else)."""
        return self._settings

    def views(self) -> Views:
        """The narrow part views receive (reference §15)."""
        return Views(self.store, self.runs.evaluate, lambda: self._settings, self.on_reload)

    def observe(self, observer: Observer) -> None:
        """Add an observer of the store after construction (a shell's view that must hear
        every change as it happens: embed/probethread.py)."""
        self.observers.append(observer)
        self.store.fanout.observers.append(observer)

    def on_reload(self, listener: OnReload) -> None:
        """Call `listener(settings)` after each reload has swapped the settings."""
        self._listeners.append(listener)

    # --- running ----------------------------------------------------------------------------------

    def start(self) -> None:
        """Schedule every `background` check (and sample the loop's lag)."""
        self.lag.ensure_running()
        self.scheduler.start(self.store.specs())
        self.runs.waking = True  # a recovered parent runs its skipped children at once
        self._running = True

    async def stop(self) -> None:
        """Stop scheduling, cancel the runs in flight and wait for them, stop the lag monitor."""
        self._running = False
        self.scheduler.stop()
        self.runs.waking = False
        await self.runs.stop()
        if self.context.held:  # what cancelled runs left going (exec: TERM → KILL, reap)
            await asyncio.wait(self.context.held, timeout=HELD_LIMIT)
        await self.lag.stop()

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def evaluate(
        self,
        group: str = "readiness",
        deadline: Deadline | None = None,
        *,
        fresh: bool = False,
        exclude: Sequence[str] = (),
        only: str | None = None,
    ) -> Snapshot:
        """The group's snapshot after running its `on_demand` checks (all if `fresh`)
        within `deadline` (default: `deadline.default` less the margin)."""
        if deadline is None:
            cfg = self._settings.deadline
            deadline = Deadline.within(cfg.default, cfg.margin, self.clock)
        evaluation = await self.runs.evaluate(
            group, deadline, fresh=fresh, exclude=exclude, only=only
        )
        return evaluation.snapshot(self.store)

    # --- the drain state --------------------------------------------------------------------------

    @property
    def draining(self) -> bool:
        return self.store.draining

    def drain(self) -> None:
        """Readiness fails from now on (liveness does not)."""
        self.store.set_draining(True)

    def ready(self) -> None:
        """Leave draining."""
        self.store.set_draining(False)

    # --- application input ------------------------------------------------------------------------

    async def beat(self, name: str, status: str = "pass", message: str = "") -> CheckResult:
        """A heartbeat from application code for `heartbeat` check `name`: posted to the
        store and run at once (ValueError: no such heartbeat check, or a bad status)."""
        spec = self.store.spec(name)
        if spec is None or spec.kind != "heartbeat":
            raise ValueError(f"no heartbeat check {name!r:.70}")
        self.store.post_beat(name, Beat.parse(status, message, self.clock()))
        return await self.runs.join(name, Deadline.after(spec.timeout, self.clock))

    def on_stop(
        self,
        fn: Callable[[], Any],
        timeout: float | str = DEFAULT_TIMEOUT,
        name: str | None = None,
    ) -> None:
        """Run `fn` (sync or async) when the app stops, after its requests have drained:
        hooks run in reverse order of registration, each under its own `timeout` (`"5s"`)
        and never past `shutdown.deadline` (hooks.py)."""
        self.hooks.add(fn, name, timeout)

    # --- reload -----------------------------------------------------------------------------------

    async def reload(self, settings: Settings) -> Changes:
        """Apply new settings; unchanged checks keep their state. Tells the listeners."""
        before = {s.name for s in self.store.specs()}
        kept = self._configure(settings)
        now = [s.name for s in self.store.specs()]
        added = [n for n in now if n not in before]
        removed = [n for n in before if n not in self.runs.checks]
        changed = [n for n in now if n in before and n not in kept]
        if self._running:
            for name in removed + changed:
                self.scheduler.remove(name)
            for name in added + changed:
                spec = self.store.spec(name)
                assert spec is not None
                self.scheduler.add(spec)
        for listener in self._listeners:
            listener(settings)
        return Changes(added, removed, changed)

    def _configure(self, settings: Settings) -> set[str]:
        kept = self.store.configure(
            settings.all_checks, settings.membership(), history=settings.history
        )
        old = self.runs.checks
        self.runs.checks = {
            s.name: old[s.name] if s.name in kept else self.build(s, self.context)
            for s in self.store.specs()
        }
        self.runs.dependents = dependencies.dependents(self.store.specs())
        self._settings = settings
        return kept

    def _next_delay(self, spec: SpecBase) -> float:
        state = self.store.check(spec.name)
        return next_delay(spec, state) if state is not None else spec.interval


def _build(spec: SpecBase, context: Context) -> Check:
    spec.preload()  # here, at start-up or reload, not inside a run on the event loop
    return spec.build(context)
