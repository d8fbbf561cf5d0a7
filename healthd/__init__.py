"""healthd: may this service take traffic right now, and if not, why?"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("healthd")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"
