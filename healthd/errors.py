"""The exceptions healthd raises, and what each means.

    HealthdError                  anything healthd raises on purpose
    ├── ConfigError               an invalid config; one line each: file:line: path: why
    ├── BudgetError               an inbound deadline header or query cannot be parsed (→ HTTP 400)
    ├── CommandError              `healthd run -- CMD`: CMD cannot run; exit 127 (not found) or 126
    └── CheckError                a check ran and did not pass; carries a stable `reason`
        ├── CheckFailed           the dependency answered, and the answer is bad (or refused us)
        └── CheckTimeout          the dependency did not answer within the deadline

Checks raise `CheckFailed(reason, message)` for failures they understand and let
anything else propagate; the runner maps the rest to a reason (see runner.py).
"""

from __future__ import annotations

from healthd.model import Reason


def install(extra: str) -> str:
    """How to get an optional extra, installed or from a source checkout (`make run`'s venv)."""
    return (
        f"pip install 'healthd[{extra}]' (a source checkout: .venv/bin/pip install -e '.[{extra}]')"
    )


class HealthdError(Exception):
    """Base of every error healthd raises on purpose."""


class ConfigError(HealthdError):
    """An invalid configuration; `str()` is the one-line message for the operator."""


class BudgetError(HealthdError):
    """An inbound deadline could not be parsed; answered with 400."""


class CommandError(HealthdError):
    """The command to supervise cannot run; `code` is the shell's: 127 not found, 126 not
    executable."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class CheckError(HealthdError):
    """A check did not pass. `reason` is a stable label value, the message is free text."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class CheckFailed(CheckError):
    """The dependency answered, and the answer means failure."""


class CheckTimeout(CheckError):
    """The dependency did not answer in time (raised by checks that time out on their own)."""

    def __init__(self, message: str = "timed out") -> None:
        super().__init__(Reason.TIMEOUT, message)
