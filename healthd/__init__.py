"""healthd: may this service take traffic right now, and if not, why?

The public API (reference §15): `Health` (the core), `checks` (the kinds, `checks.Func`) and
`Deadline`. They are imported on first use, so `healthd probe` starts without them.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("healthd")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

if TYPE_CHECKING:
    from healthd import checks
    from healthd.deadline import Deadline
    from healthd.health import Health

__all__ = ["Deadline", "Health", "__version__", "checks"]

_LAZY = {"Health": "healthd.health", "Deadline": "healthd.deadline", "checks": "healthd.checks"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'healthd' has no attribute {name!r}")
    loaded = import_module(module)
    return loaded if name == "checks" else getattr(loaded, name)
