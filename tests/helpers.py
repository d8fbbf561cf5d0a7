"""Building engines and apps around FakeChecks for API and engine tests."""

from __future__ import annotations

from typing import Any

from healthd.checks.base import Context, SpecBase
from healthd.config import Settings, parse_settings
from healthd.engine import Engine
from healthd.testing import FakeCheck


def settings(checks: list[dict[str, Any]], **top: Any) -> Settings:
    """Settings from Python data (checks default to `tcp` specs, to be swapped for fakes)."""
    import json

    tcp = {"kind": "tcp", "address": "127.0.0.1:9"}
    data = {**top, "checks": [c if c.get("kind", "tcp") != "tcp" else {**tcp, **c} for c in checks]}
    return parse_settings(json.dumps(data))


def engine_with(fakes: dict[str, FakeCheck], s: Settings, **kwargs: Any) -> Engine:
    def build(spec: SpecBase, context: Context) -> Any:
        return fakes[spec.name] if spec.name in fakes else spec.build(context)

    return Engine(s, build=build, **kwargs)
