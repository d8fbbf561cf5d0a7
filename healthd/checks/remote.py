"""`remote`: another healthd (or any `/readyz`) is healthy; degraded is a `warn`.

The remaining budget goes onward as `X-Request-Timeout-Ms`, so the other side
answers within ours and names its own timed-out checks; a chain of healthd
instances reports the leaf: `unhealthy: payments → db: timeout after 340ms`.
The other side's `checks` (present when it shows us details, e.g. with `token`)
come back as the result's `nested`, on failure too (`RemoteUnhealthy.nested`).
An answer that is not healthd JSON passes on 2xx and fails otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import aiohttp
from pydantic import Field, SecretStr, field_validator

from healthd.checks.base import Context, SpecBase
from healthd.checks.http import (
    check_url,
    new_session,
    onward_headers,
    read_bounded,
    redact_url,
    translate,
)
from healthd.deadline import Deadline
from healthd.errors import CheckFailed
from healthd.model import Observation, Outcome, Reason

# IETF health+json words, in case the other side answers in that shape.
_STATES = {"pass": "healthy", "warn": "degraded", "fail": "unhealthy"}
_FAILING = frozenset({"fail", "timeout", "unknown"})
_WARNING = _FAILING | {"warn"}
_MAX_NAMED = 4


class RemoteUnhealthy(CheckFailed):
    """The other side is not healthy; `nested` holds its checks for our detail view."""

    def __init__(self, message: str, nested: Mapping[str, Any] | None) -> None:
        super().__init__(Reason.UNHEALTHY, message)
        self.nested = nested


class RemoteSpec(SpecBase):
    kind: Literal["remote"] = "remote"
    example: ClassVar[dict[str, Any]] = {"url": "http://{remote}/readyz"}
    url: SecretStr = Field(description="the other healthd's /readyz or /health")
    token: SecretStr | None = Field(default=None, description="bearer token to see its details")

    @field_validator("url")
    @classmethod
    def _url(cls, url: SecretStr) -> SecretStr:
        return check_url(url)

    def build(self, context: Context | None = None) -> RemoteCheck:
        return RemoteCheck(self.url.get_secret_value(), self.token)


def _one_line(text: object, limit: int = 120) -> str:
    return " ".join(str(text).split())[:limit]


def leaves(checks: Mapping[str, Any], bad: frozenset[str]) -> list[str]:
    """`name: message` for each check whose status is in `bad`, critical ones first.

    A nested remote check is followed down to the checks that made it fail:
    `payments → db: timeout after 340ms`.
    """
    found: list[tuple[bool, str]] = []
    for name, check in checks.items():
        if not isinstance(check, Mapping) or check.get("status") not in bad:
            continue
        inner = check.get("checks")
        deeper = leaves(inner, bad) if isinstance(inner, Mapping) else []
        optional = check.get("critical") is False
        if deeper:
            found += [(optional, f"{name} → {leaf}") for leaf in deeper]
        else:
            found.append(
                (optional, f"{name}: {_one_line(check.get('message') or check['status'])}")
            )
    return [text for _, text in sorted(found, key=lambda item: item[0])]


def summary(state: str, checks: Mapping[str, Any] | None, bad: frozenset[str]) -> str:
    """`unhealthy: db: timeout after 340ms; cache: connection refused`."""
    if checks is None:
        return f"{state} (no details shown to us)"
    named = leaves(checks, bad)
    if not named:
        return state
    more = f"; (+{len(named) - _MAX_NAMED} more)" if len(named) > _MAX_NAMED else ""
    return f"{state}: " + "; ".join(named[:_MAX_NAMED]) + more


def judge(status: int, body: bytes, url: str) -> Observation:
    """The other side's answer as our Observation; raises when it is not healthy."""
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    state = document.get("status") if isinstance(document, dict) else None
    if not isinstance(state, str) or not isinstance(document, dict):
        if 200 <= status < 300:
            return Observation(message=f"HTTP {status} from {url} (not a healthd answer)")
        raise CheckFailed(Reason.UNHEALTHY, f"HTTP {status} from {url}")
    state = _STATES.get(state.lower(), state.lower())
    raw = document.get("checks")
    checks: Mapping[str, Any] | None = raw if isinstance(raw, dict) else None
    if state == "healthy":
        count = f" ({len(checks)} checks)" if checks is not None else ""
        return Observation(message=f"healthy{count}", nested=checks)
    if state == "degraded":
        return Observation(Outcome.WARN, summary(state, checks, _WARNING), nested=checks)
    raise RemoteUnhealthy(summary(_one_line(state, 40), checks, _FAILING), checks)


class RemoteCheck:
    def __init__(self, url: str, token: SecretStr | None) -> None:
        self.url, self.token = url, token
        self.safe_url = redact_url(url)

    async def __call__(self, deadline: Deadline) -> Observation:
        extra = {"Accept": "application/json"}
        if self.token is not None and self.token.get_secret_value():
            extra["Authorization"] = f"Bearer {self.token.get_secret_value()}"
        headers = onward_headers(deadline, extra)
        session, _ = new_session()
        async with session:
            try:
                async with session.get(self.url, headers=headers) as response:
                    status = response.status
                    body = await read_bounded(response)
            except aiohttp.ClientError as exc:
                raise translate(exc, self.safe_url) from None
        return judge(status, body, self.safe_url)
