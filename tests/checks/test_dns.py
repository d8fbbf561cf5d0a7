"""`dns`: the system resolver, and a tiny UDP nameserver on loopback for dnspython."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from pydantic import ValidationError

from healthd import runner
from healthd.checks.dns import DnsLookup, DnsSpec, SystemLookup, parse_resolver
from healthd.deadline import Deadline
from healthd.model import CheckResult, Outcome, Reason

ZONE = {
    ("svc.test.", "A"): ["192.0.2.1", "192.0.2.2"],
    ("svc.test.", "MX"): ["10 mail.svc.test."],
    ("svc.test.", "TXT"): ['"v=ok"'],
}


class Nameserver(asyncio.DatagramProtocol):
    """Answers from ZONE: NXDOMAIN for unknown names, an empty answer for unknown types."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.silent = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.silent or self.transport is None:
            return
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        question = query.question[0]
        name, rdtype = question.name.to_text(), dns.rdatatype.to_text(question.rdtype)
        if not any(known == name for known, _ in ZONE):
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif (name, rdtype) in ZONE:
            response.answer.append(dns.rrset.from_text(name, 60, "IN", rdtype, *ZONE[name, rdtype]))
        self.transport.sendto(response.to_wire(), addr)


@pytest.fixture
async def nameserver() -> AsyncIterator[tuple[Nameserver, str]]:
    """A UDP nameserver on 127.0.0.1 and a free port; yields it and its `IP:port`."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        Nameserver, local_addr=("127.0.0.1", 0)
    )
    try:
        yield protocol, f"127.0.0.1:{transport.get_extra_info('sockname')[1]}"
    finally:
        transport.close()


async def run(host: str, timeout: str = "1s", **keys: Any) -> CheckResult:
    spec = DnsSpec(name="names", kind="dns", host=host, timeout=timeout, **keys)
    return await runner.run(spec, spec.build(), Deadline.after(5.0))


async def test_system_resolver_finds_localhost() -> None:
    """localhost A through getaddrinfo passes and shows the address."""
    result = await run("localhost")
    assert result.outcome is Outcome.PASS, result.message
    assert result.message == "localhost A: 127.0.0.1"


async def test_system_resolver_unknown_name_is_dns() -> None:
    """A name that cannot exist → fail, reason dns."""
    result = await run("does-not-exist.invalid")
    assert (result.outcome, result.reason) == (Outcome.FAIL, Reason.DNS)
    assert result.message.startswith("does-not-exist.invalid A: ")


def test_system_a_and_aaaa_need_no_dnspython() -> None:
    """resolver=system with A/AAAA uses getaddrinfo; anything else uses dnspython."""
    assert isinstance(DnsSpec(name="n", kind="dns", host="h").build(), SystemLookup)
    aaaa = DnsSpec(name="n", kind="dns", host="h", record_type="AAAA")
    assert isinstance(aaaa.build(), SystemLookup)
    mx = DnsSpec(name="n", kind="dns", host="h", record_type="MX")
    assert isinstance(mx.build(), DnsLookup)


@pytest.mark.parametrize(
    ("record_type", "message"),
    [
        ("A", "svc.test A: 192.0.2.1, 192.0.2.2"),
        ("MX", "svc.test MX: 10 mail.svc.test."),
        ("TXT", 'svc.test TXT: "v=ok"'),
    ],
)
async def test_named_nameserver_answers(
    nameserver: tuple[Nameserver, str], record_type: str, message: str
) -> None:
    """A record from a named nameserver passes and is shown."""
    result = await run("svc.test", record_type=record_type, resolver=nameserver[1])
    assert result.outcome is Outcome.PASS, result.message
    assert result.message == message


async def test_nxdomain_is_dns(nameserver: tuple[Nameserver, str]) -> None:
    """NXDOMAIN → fail, reason dns."""
    result = await run("nope.test", resolver=nameserver[1])
    assert (result.outcome, result.reason) == (Outcome.FAIL, Reason.DNS)
    assert result.message == "nope.test A: no such name (NXDOMAIN)"


async def test_no_answer_is_dns(nameserver: tuple[Nameserver, str]) -> None:
    """The name exists but has no record of that type → fail, reason dns."""
    result = await run("svc.test", record_type="AAAA", resolver=nameserver[1])
    assert (result.outcome, result.reason) == (Outcome.FAIL, Reason.DNS)
    assert result.message == "svc.test AAAA: no records"


async def test_silent_nameserver_times_out_at_the_deadline(
    nameserver: tuple[Nameserver, str],
) -> None:
    """A nameserver that never answers → timeout at 300ms, not before, not much after."""
    nameserver[0].silent = True
    result = await run("svc.test", timeout="300ms", resolver=nameserver[1])
    assert (result.outcome, result.reason) == (Outcome.TIMEOUT, Reason.TIMEOUT)
    assert 0.28 <= result.duration <= 0.6


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("10.0.0.2", ("10.0.0.2", 53)), ("10.0.0.2:5353", ("10.0.0.2", 5353)),
     ("::1", ("::1", 53)), ("[::1]:5353", ("::1", 5353))],
)  # fmt: skip
def test_parse_resolver(text: str, parsed: tuple[str, int]) -> None:
    """Nameservers are IPv4 or IPv6, with an optional port."""
    assert parse_resolver(text) == parsed


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"resolver": "dns.google"}, "not an IP address"),
        ({"resolver": "10.0.0.2:99999"}, "port must be"),
        ({"resolver": "[::1]x"}, "not IP\\[:port\\]"),
        ({"record_type": "PTR"}, "record_type"),
    ],
)
def test_invalid_specs(keys: dict[str, str], message: str) -> None:
    """Bad resolvers and record types are config errors that say why."""
    with pytest.raises(ValidationError, match=message):
        DnsSpec(name="names", kind="dns", host="h", **keys)
