"""`dns`: a pass means `host` resolved to at least one `record_type` record.

With the system resolver, A and AAAA go through `getaddrinfo` (what the service
itself would do, /etc/hosts included; no extra needed). Other record types, or a
named nameserver, use dnspython (extra `dns`, imported lazily). dnspython's own
`lifetime` overruns, so the runner's `asyncio.timeout` stays the real deadline.
"""

from __future__ import annotations

import asyncio
import importlib.util
import ipaddress
import socket
from typing import Any, ClassVar, Literal, Self

from pydantic import Field, field_validator, model_validator

from healthd.checks.base import Context, SpecBase
from healthd.deadline import Deadline
from healthd.errors import CheckFailed, CheckTimeout, install
from healthd.model import Observation, Reason

RecordType = Literal["A", "AAAA", "CNAME", "MX", "TXT", "SRV", "NS"]
_FAMILIES = {"A": socket.AF_INET, "AAAA": socket.AF_INET6}
_SHOWN = 3


def parse_resolver(text: str) -> tuple[str, int]:
    """`10.0.0.2`, `10.0.0.2:5353`, `::1` or `[::1]:5353` → (ip, port)."""
    host, port = text, 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise ValueError(f"{text!r} is not IP[:port]")
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, number = text.partition(":")
        if not number.isdigit():
            raise ValueError(f"{text!r} is not IP[:port]")
        port = int(number)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address (nameservers are given by IP)") from None
    if not 0 < port < 65536:
        raise ValueError(f"{text!r}: port must be 1..65535")
    return host, port


def _shown(records: list[str]) -> str:
    unique = sorted(set(records))  # stable messages; resolvers shuffle rrsets
    more = f" (+{len(unique) - _SHOWN} more)" if len(unique) > _SHOWN else ""
    return ", ".join(unique[:_SHOWN]) + more


class DnsSpec(SpecBase):
    kind: Literal["dns"] = "dns"
    example: ClassVar[dict[str, Any]] = {"host": "localhost"}
    host: str = Field(min_length=1, max_length=253, description="the name to resolve")
    record_type: RecordType = "A"
    resolver: str = Field(default="system", description='"system" or a nameserver IP[:port]')

    @field_validator("resolver")
    @classmethod
    def _resolver(cls, value: str) -> str:
        if value != "system":
            parse_resolver(value)
        return value

    @model_validator(mode="after")
    def _driver(self) -> Self:
        if self.needs_dnspython and importlib.util.find_spec("dns") is None:
            raise ValueError(f"check {self.name!r} needs: {install('dns')}")
        return self

    @property
    def needs_dnspython(self) -> bool:
        return self.resolver != "system" or self.record_type not in _FAMILIES

    def build(self, context: Context | None = None) -> SystemLookup | DnsLookup:
        if self.needs_dnspython:
            return DnsLookup(self.host, self.record_type, self.resolver)
        return SystemLookup(self.host, self.record_type)


class SystemLookup:
    """A/AAAA through the system resolver (`getaddrinfo`)."""

    def __init__(self, host: str, record_type: str) -> None:
        self.host, self.record_type = host, record_type

    async def __call__(self, deadline: Deadline) -> Observation:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(
                self.host, None, family=_FAMILIES[self.record_type], type=socket.SOCK_STREAM
            )
        except socket.gaierror as exc:
            raise CheckFailed(
                Reason.DNS, f"{self.host} {self.record_type}: {exc.strerror}"
            ) from None
        records = [str(info[4][0]) for info in infos]
        if not records:
            raise CheckFailed(Reason.DNS, f"{self.host} {self.record_type}: no records")
        return Observation(message=f"{self.host} {self.record_type}: {_shown(records)}")


class DnsLookup:
    """Any record type, from the system's nameservers or a named one, with dnspython."""

    def __init__(self, host: str, record_type: str, resolver: str) -> None:
        self.host, self.record_type, self.resolver = host, record_type, resolver

    def _resolver(self) -> Any:
        import dns.asyncresolver  # optional extra: imported lazily

        if self.resolver == "system":
            return dns.asyncresolver.Resolver(configure=True)
        resolver = dns.asyncresolver.Resolver(configure=False)
        ip, port = parse_resolver(self.resolver)
        resolver.port = port  # before nameservers: the setter binds each one to the port
        resolver.nameservers = [ip]
        return resolver

    async def __call__(self, deadline: Deadline) -> Observation:
        import dns.exception
        import dns.resolver

        where = f"{self.host} {self.record_type}"
        try:
            resolver = self._resolver()
            answer = await resolver.resolve(
                self.host, self.record_type, lifetime=max(deadline.remaining(), 0.001)
            )
        except dns.resolver.NXDOMAIN:
            raise CheckFailed(Reason.DNS, f"{where}: no such name (NXDOMAIN)") from None
        except dns.resolver.NoAnswer:
            raise CheckFailed(Reason.DNS, f"{where}: no records") from None
        except dns.resolver.NoNameservers:
            raise CheckFailed(Reason.DNS, f"{where}: no nameserver answered (SERVFAIL)") from None
        except dns.resolver.NoResolverConfiguration:
            raise CheckFailed(Reason.DNS, "no system nameservers (/etc/resolv.conf)") from None
        except dns.exception.Timeout:
            raise CheckTimeout(f"{where}: no answer from the nameserver") from None
        except dns.exception.DNSException as exc:
            raise CheckFailed(Reason.DNS, f"{where}: {exc}") from None
        records = [record.to_text() for record in answer]
        if not records:
            raise CheckFailed(Reason.DNS, f"{where}: no records")
        return Observation(message=f"{where}: {_shown(records)}")
