"""Duration strings (`250ms`, `2s`, `1m`, `1h30m`) as they appear in config and queries."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)")
PATTERN = r"^(\d+(\.\d+)?(us|ms|s|m|h))+$"


def parse_duration(text: str) -> float:
    """Seconds in `text`, e.g. `parse_duration("1m30s") == 90.0`; ValueError if malformed."""
    text = text.strip()
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f"invalid duration {text!r} (use e.g. 250ms, 2s, 1m)")
    return total


def format_duration(seconds: float) -> str:
    """The shortest exact string for `seconds` in ms or s: 0.25 → `250ms`, 2.0 → `2s`."""
    ms = round(seconds * 1000, 3)
    if ms >= 1000 and ms % 1000 == 0:
        return f"{int(ms // 1000)}s"
    return f"{ms:g}ms"


def human_duration(seconds: float) -> str:
    """For messages: whole ms from 10 ms up (0.2799 → `280ms`), exact below, whole s as `2s`."""
    return format_duration(round(seconds, 3) if seconds >= 0.01 else seconds)


def _coerce(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, bool):
        raise ValueError("a duration is a string such as 250ms or 2s")
    if isinstance(value, int | float):
        raise ValueError(f"a duration needs a unit: write {value}s or {value}ms")
    return value


Duration = Annotated[
    float,
    BeforeValidator(_coerce),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": PATTERN, "examples": ["250ms", "2s", "1m"]}),
]
"""A duration in seconds (float) that config writes as a string with a unit."""
