"""Observers: metrics, traces and logs, each reacting to what the engine sees.

`setup(settings)` builds them once at start-up; the daemon wires the result in and
calls `shutdown()` last, so telemetry is flushed before exit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web
from opentelemetry.trace import Tracer

from healthd.config import Settings
from healthd.engine import Engine, Observer


@dataclass(slots=True)
class Telemetry:
    """What the daemon wires in: engine observers, extra probe routes, a tracer, a flush."""

    observers: list[Observer] = field(default_factory=list)
    routes: list[web.RouteDef] = field(default_factory=list)
    tracer: Tracer | None = None

    def bind(self, engine: Engine) -> None:
        """Called once the engine exists, for collectors that read its state at scrape time."""

    def shutdown(self) -> None:
        """Flush and stop exporters (called once, last thing before exit)."""


def setup(settings: Settings) -> Telemetry:
    """The telemetry for a daemon running `settings`."""
    return Telemetry()
