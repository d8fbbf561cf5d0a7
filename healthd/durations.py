"""Duration strings (`250ms`, `2s`, `1m`, `1h30m`) as they appear in config and queries,
and percentages (`50%`, `12.5%`) as config writes them."""

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


PERCENT_PATTERN = r"^\d+(\.\d+)?%$"


def parse_percent(text: str) -> float:
    """The fraction in `text`, e.g. `parse_percent("50%") == 0.5`; ValueError if malformed."""
    body = text.strip()
    if not body.endswith("%") or not re.fullmatch(r"\d+(\.\d+)?", body[:-1].strip()):
        raise ValueError(f"invalid percentage {text!r} (use e.g. 50% or 12.5%)")
    value = float(body[:-1]) / 100
    if value > 1:
        raise ValueError(f"{text.strip()} is above 100%")
    return value


def format_percent(fraction: float) -> str:
    """`0.5` → `50%`."""
    return f"{round(fraction * 100, 6):g}%"


def _coerce_percent(value: Any) -> Any:
    if isinstance(value, str):
        return parse_percent(value)
    if isinstance(value, bool):
        raise ValueError("a percentage is a string such as 50%")
    if isinstance(value, int | float):
        raise ValueError(f"a percentage needs its sign: write {value}%")
    return value


Percent = Annotated[
    float,
    BeforeValidator(_coerce_percent),
    PlainSerializer(format_percent, return_type=str),
    WithJsonSchema({"type": "string", "pattern": PERCENT_PATTERN, "examples": ["50%", "25%"]}),
]
"""A fraction (0..1) that config writes as a percentage string."""
