"""`process`: the app healthd supervises (`healthd run -- CMD`, reference §16) is running.

A pass while the child runs, with its pid and uptime (`pid 41 up 3m12s`); a fail once
it has ended (healthd exits within a second of that anyway). Supervised, a config
without a `process` check gets one named `app`, in readiness, liveness and startup
(config.py); without `-- CMD` the check fails, saying there is no child.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from healthd.checks.base import Context, SpecBase, Supervised
from healthd.deadline import Deadline
from healthd.errors import CheckFailed
from healthd.model import Observation, Reason


class ProcessSpec(SpecBase):
    spread_first_run = False  # reads a field: run at start, /startupz waits on it

    kind: Literal["process"] = "process"
    example: ClassVar[dict[str, Any]] = {}  # watches the supervised child: nothing to set

    def build(self, context: Context | None = None) -> ProcessCheck:
        return ProcessCheck((context or Context()).app)


class ProcessCheck:
    def __init__(self, app: Supervised | None) -> None:
        self.app = app

    async def __call__(self, deadline: Deadline) -> Observation:
        app = self.app
        if app is None:
            raise CheckFailed(Reason.UNEXPECTED, "no process: healthd runs without `-- CMD`")
        if app.pid is None:
            raise CheckFailed(Reason.UNHEALTHY, "not started yet")
        if app.ended is not None:
            raise CheckFailed(Reason.UNHEALTHY, f"pid {app.pid} {app.ended}")
        return Observation(message=f"pid {app.pid} up {uptime(app.uptime)}")


def uptime(seconds: float) -> str:
    """`0s`, `12s`, `3m12s`, `2h05m`, `3d4h`: as `ps` and `docker ps` say it, roughly."""
    whole = max(0, int(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"
