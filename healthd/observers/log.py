"""Logs: one structured line per state transition (check status or group state).

Never one line per passing run: a steady state is silent. A flapping check logs
"started flapping" once and "stopped flapping" once instead of a line per change.
`logging.format: json` writes one JSON object per line (`ts`, `level`, `msg`, and for
transitions `event`, `check` or `group`, `from`, `to`, `reason`, `message`; for the
supervisor's exit line `event: exit` and an `exit` object); `text` writes
`ts LEVEL msg`. Messages come from checks, which redact secrets before any message
includes a URL or DSN.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Any

from healthd.checks.base import SpecBase
from healthd.config import LoggingSettings
from healthd.events import Observer
from healthd.model import CheckState, State

log = logging.getLogger("healthd.state")
FIELDS = ("event", "check", "group", "from", "to", "reason", "message", "exit")
_BAD = {State.UNHEALTHY, State.UNKNOWN}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; structured fields come from the record's `fields` extra."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update({k: fields[k] for k in FIELDS if fields.get(k) is not None})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def make_handler(settings: LoggingSettings, stream: IO[str] | None = None) -> logging.Handler:
    """A stream handler (stderr by default) in the configured format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if settings.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    return handler


def configure(settings: LoggingSettings) -> None:
    """Replace the root logger's handlers with ours, at the configured level (`healthd run`)."""
    logging.basicConfig(handlers=[make_handler(settings)], level=settings.level.upper(), force=True)


class TransitionLog(Observer):
    """Logs check status changes and group state changes, nothing else."""

    def __init__(self, logger: logging.Logger = log) -> None:
        self.logger = logger

    def on_transition(self, spec: SpecBase, before: CheckState, after: CheckState) -> None:
        if after.flapping is not before.flapping:
            self._flapping(spec, before, after)
            return
        last = after.last
        reason = last.reason.value if last is not None else None
        message = last.message if last is not None else None
        level = logging.WARNING if after.status.failing else logging.INFO
        fields = {
            "event": "check_transition", "check": spec.name, "group": None,
            "from": before.status.value, "to": after.status.value,
            "reason": reason, "message": message,
        }  # fmt: skip
        detail = f" ({reason}: {message})" if after.status.failing and last else ""
        self.logger.log(
            level, "check %s: %s → %s%s", spec.name, before.status.value, after.status.value,
            detail, extra={"fields": fields},
        )  # fmt: skip

    def _flapping(self, spec: SpecBase, before: CheckState, after: CheckState) -> None:
        started = after.flapping
        percent = after.flap.percent if after.flap is not None else 0.0
        what = "started flapping" if started else "stopped flapping"
        fields = {
            "event": "check_flapping", "check": spec.name, "group": None,
            "from": before.status.value, "to": after.status.value,
            "reason": "flapping", "message": f"{percent:.0f}% changes",
        }  # fmt: skip
        self.logger.log(
            logging.WARNING if started else logging.INFO,
            "check %s: %s (%.0f%% outcome changes over the last %d runs); status %s",
            spec.name, what, percent, after.flap.window if after.flap else 0, after.status.value,
            extra={"fields": fields},
        )  # fmt: skip

    def on_group(self, group: str, before: State | None, after: State) -> None:
        was = before.value if before is not None else "none"
        level = logging.WARNING if after in _BAD else logging.INFO
        fields = {"event": "group_transition", "group": group, "from": was, "to": after.value}
        self.logger.log(
            level, "group %s: %s → %s", group, was, after.value, extra={"fields": fields}
        )
