"""`fleet:` (reference §14): the etcd endpoints, this service and instance, the lease and the rules.

Endpoint URLs may carry `user:password@` for etcd's authentication; the credentials are
taken out on load (`credentials`, a SecretStr) and `etcd` keeps only what is fit to print.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Self
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from healthd.checks.base import NAME_PATTERN, Model
from healthd.durations import Duration, Percent

MIN_TTL = 2.0  # etcd 3.4 grants no lease shorter than ~1.5 s (3/2 election timeouts), rounded up
SETTLE_CAP = 2.0


def default_instance() -> str:
    """`${POD_NAME}`, else `${HOSTNAME}`, else the host name."""
    return os.environ.get("POD_NAME") or os.environ.get("HOSTNAME") or socket.gethostname()


class FleetSettings(Model):
    # Full URLs, held as secrets: they may carry `user:password@` (etcd authentication).
    # `endpoints` gives them fit to print, `credentials` the user and password.
    etcd: list[SecretStr] = Field(min_length=1, max_length=16)
    service: str = Field(pattern=NAME_PATTERN, max_length=63)
    instance: str = Field(default="", max_length=128)  # "": POD_NAME, HOSTNAME, gethostname()
    ttl: Duration = 10.0
    panic_threshold: Percent = 0.5
    max_draining: int = Field(default=1, ge=0, le=1000)
    settle: Duration | None = None  # None: min(ttl / 2, 2s)

    @field_validator("etcd", mode="before")
    @classmethod
    def _one(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("etcd")
    @classmethod
    def _urls(cls, urls: list[SecretStr]) -> list[SecretStr]:
        for i, url in enumerate(urls):
            _split(url.get_secret_value(), i)
        return urls

    @model_validator(mode="after")
    def _rules(self) -> Self:
        if self.ttl < MIN_TTL:
            raise ValueError(f"ttl: must be at least {MIN_TTL:g}s (etcd's shortest lease)")
        if self.settle is not None and self.settle >= self.ttl:
            raise ValueError("settle: must be shorter than ttl")
        if not 0 < self.panic_threshold <= 1:
            raise ValueError("panic_threshold: must be above 0% and at most 100%")
        if not self.instance:
            object.__setattr__(self, "instance", default_instance()[:128])
        return self

    @property
    def endpoints(self) -> list[str]:
        """The endpoint URLs without credentials: `http://etcd:2379`."""
        return [_split(u.get_secret_value(), i)[0] for i, u in enumerate(self.etcd)]

    @property
    def credentials(self) -> tuple[str, SecretStr] | None:
        """(user, password) from the endpoint URLs, for etcd's /v3/auth/authenticate."""
        for i, url in enumerate(self.etcd):
            found = _split(url.get_secret_value(), i)[1]
            if found is not None:
                return found
        return None

    @property
    def settle_window(self) -> float:
        return self.settle if self.settle is not None else min(self.ttl / 2, SETTLE_CAP)

    @property
    def prefix(self) -> str:
        return f"/healthd/{self.service}/"


def _split(url: str, i: int) -> tuple[str, tuple[str, SecretStr] | None]:
    """(the URL without userinfo, (user, password) or None); ValueError naming endpoint i+1."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError(f"endpoint {i + 1} is not a URL (use http://host:2379)") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"endpoint {i + 1} must be http://host:port or https://host:port")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"endpoint {i + 1} takes no path or query (use http://host:2379)")
    found = None
    if parts.username is not None:
        found = (unquote(parts.username), SecretStr(unquote(parts.password or "")))
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{port or 2379}", found
