"""`http`: a pass means the status and body conditions hold.

One `aiohttp.ClientSession` per run (closed on return, failure and cancellation).
The onward budget goes out as `X-Request-Timeout-Ms`, the trace context as
`traceparent`; the runner's `asyncio.timeout` does the precise timing (aiohttp
rounds its own timeouts above 5 s). URLs and header values may hold secrets:
they are `SecretStr` and only `redact_url()` output reaches a message.
The shared client helpers here are used by `remote` too.
"""

from __future__ import annotations

import errno
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, Self
from urllib.parse import urlsplit

import aiohttp
from aiohttp.client_reqrep import ClientRequest
from aiohttp.connector import Connection
from aiohttp.tracing import Trace
from pydantic import Field, SecretStr, field_validator, model_validator

import healthd
from healthd import tracecontext
from healthd.checks.base import Context, SpecBase
from healthd.checks.urls import redact
from healthd.deadline import Deadline
from healthd.errors import CheckFailed
from healthd.model import Observation, Outcome, Reason

BODY_LIMIT = 64 * 1024
USER_AGENT = f"healthd/{healthd.__version__}"
_STATUS = re.compile(r"^(\d{3})(?:\.\.(\d{3}))?$")
_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_PATH = re.compile(r"^([^.\[\]]+|\[\d+\])(\.[^.\[\]]+|\[\d+\])*$")

JsonScalar = str | int | float | bool | None


def redact_url(url: str) -> str:
    """`url` fit for a message (a lone user name in an http URL is a token: masked)."""
    return redact(url, user_is_secret=True)


def check_url(url: SecretStr) -> SecretStr:
    """Validate an http(s) URL held as a secret, without echoing it."""
    parts = urlsplit(url.get_secret_value())
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"must be an http:// or https:// URL, not {parts.scheme or 'no'} scheme")
    if not parts.hostname:
        raise ValueError("must name a host")
    return url


def onward_headers(deadline: Deadline, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Headers for an onward call: ours, the remaining budget and W3C trace context."""
    headers = {"User-Agent": USER_AGENT, **(extra or {}), **deadline.headers()}
    tracecontext.inject(headers)
    return headers


class CapturingConnector(aiohttp.TCPConnector):
    """A connector that keeps the DER certificate of the last TLS peer it connected to."""

    peer_cert: bytes | None = None

    async def connect(
        self,
        req: ClientRequest,
        traces: list[Trace],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 - aiohttp's signature
    ) -> Connection:
        conn = await super().connect(req, traces, timeout)
        ssl_object = conn.transport.get_extra_info("ssl_object") if conn.transport else None
        if ssl_object is not None:
            self.peer_cert = ssl_object.getpeercert(binary_form=True)
        return conn


def new_session(tls_verify: bool = True) -> tuple[aiohttp.ClientSession, CapturingConnector]:
    """A one-run session: no pooling, system resolver pinned (not c-ares), no client timeout."""
    connector = CapturingConnector(
        ssl=tls_verify, force_close=True, resolver=aiohttp.ThreadedResolver()
    )
    session = aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=None), trust_env=False
    )
    # aiohttp re-sends an idempotent request once, on a new connection, when the server
    # drops one: a flaky server would read as passing with `attempts: 1`. Retries are
    # ours to make and count (`retries:`); there is no public switch for this one.
    session._retry_connection = False
    return session, connector


def translate(exc: aiohttp.ClientError, url: str) -> CheckFailed:
    """A client error as a CheckFailed whose message holds no secret (`url` is redacted)."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return CheckFailed(Reason.DNS, f"dns: cannot resolve {exc.host}")
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return CheckFailed(Reason.TLS, f"tls: {exc.certificate_error}")
    if isinstance(exc, aiohttp.ClientSSLError):
        return CheckFailed(Reason.TLS, f"tls: {exc.strerror or type(exc).__name__}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        if exc.errno == errno.ECONNREFUSED or "Connect call failed" in str(exc.os_error):
            return CheckFailed(Reason.REFUSED, f"connection refused: {exc.host}:{exc.port}")
        return CheckFailed(
            Reason.REFUSED, f"cannot connect to {exc.host}:{exc.port}: {exc.strerror}"
        )
    if isinstance(exc, aiohttp.TooManyRedirects):
        return CheckFailed(Reason.PROTOCOL, f"too many redirects from {url}")
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return CheckFailed(Reason.PROTOCOL, f"connection closed by {url}")
    if isinstance(exc, aiohttp.InvalidURL):
        return CheckFailed(Reason.UNEXPECTED, f"invalid URL {url}")
    return CheckFailed(Reason.PROTOCOL, f"{type(exc).__name__} from {url}")


async def read_bounded(response: aiohttp.ClientResponse, limit: int = BODY_LIMIT) -> bytes:
    """At most `limit` bytes of the body; the rest is never read."""
    body = bytearray()
    while len(body) < limit:
        chunk = await response.content.read(limit - len(body))
        if not chunk:
            break
        body += chunk
    return bytes(body)


def _tlv(der: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start, end) of the DER element at `pos`."""
    tag, length, pos = der[pos], der[pos + 1], pos + 2
    if length & 0x80:
        count = length & 0x7F
        length, pos = int.from_bytes(der[pos : pos + count], "big"), pos + count
    return tag, pos, pos + length


def cert_not_after(der: bytes) -> datetime:
    """The notAfter instant of a DER X.509 certificate (no crypto library needed)."""
    _, tbs, _ = _tlv(der, 0)  # Certificate → TBSCertificate
    _, pos, _ = _tlv(der, tbs)
    tag, _, end = _tlv(der, pos)
    pos = end if tag == 0xA0 else pos  # optional [0] version
    for _ in range(3):  # serialNumber, signature, issuer
        pos = _tlv(der, pos)[2]
    _, validity, _ = _tlv(der, pos)
    not_before_end = _tlv(der, validity)[2]
    tag, start, end = _tlv(der, not_before_end)
    text = der[start:end].decode("ascii").rstrip("Z")
    if tag == 0x17:  # UTCTime: YYMMDDHHMMSS, RFC 5280 years 50-99 are 19xx
        text = ("19" if int(text[:2]) >= 50 else "20") + text
    return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=UTC)


def _status_ranges(values: list[int | str]) -> tuple[tuple[int, int], ...]:
    ranges = []
    for value in values:
        match = _STATUS.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a status code or a range like 200..399")
        low, high = int(match[1]), int(match[2] or match[1])
        if not 100 <= low <= high <= 599:
            raise ValueError(f"{value!r} must lie within 100..599, low..high")
        ranges.append((low, high))
    return tuple(ranges)


def json_lookup(document: Any, path: str) -> Any:
    """`a.b[0].c` in `document`; KeyError when a step is missing."""
    for key, index in _PATH_PART.findall(path):
        if key and isinstance(document, dict) and key in document:
            document = document[key]
        elif index and isinstance(document, list) and int(index) < len(document):
            document = document[int(index)]
        else:
            raise KeyError(key or f"[{index}]")
    return document


def _same(actual: Any, expected: JsonScalar) -> bool:
    if isinstance(actual, bool) or isinstance(expected, bool):
        return actual is expected
    return bool(actual == expected)


class HttpSpec(SpecBase):
    kind: Literal["http"] = "http"
    example: ClassVar[dict[str, Any]] = {
        "url": "http://{http}/healthz",
        "json_path": "status",
        "equals": "green",
    }
    url: SecretStr = Field(description="http(s) URL; userinfo and query are redacted in output")
    method: Literal["GET", "HEAD", "POST", "PUT", "OPTIONS"] = "GET"
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    expect_status: list[int | str] = Field(
        default_factory=lambda: list[int | str](["200..399"]),
        min_length=1,
        description="status codes and ranges, e.g. [200, 204, '300..399']",
    )
    body_contains: str | None = None
    json_path: str | None = Field(default=None, pattern=_PATH.pattern)
    equals: JsonScalar = None
    tls_verify: bool = True
    cert_warn_days: int | None = Field(default=None, ge=1, le=3650)

    @field_validator("url")
    @classmethod
    def _url(cls, url: SecretStr) -> SecretStr:
        return check_url(url)

    @field_validator("expect_status")
    @classmethod
    def _statuses(cls, values: list[int | str]) -> list[int | str]:
        _status_ranges(values)
        return values

    @model_validator(mode="after")
    def _conditions(self) -> Self:
        if "equals" in self.model_fields_set and self.json_path is None:
            raise ValueError("equals: needs json_path")
        is_https = self.url.get_secret_value().lower().startswith("https:")
        if self.cert_warn_days is not None and not is_https:
            raise ValueError("cert_warn_days: needs an https:// url")
        has_userinfo = "@" in urlsplit(self.url.get_secret_value()).netloc
        if has_userinfo and any(key.lower() == "authorization" for key in self.headers):
            raise ValueError("headers: Authorization cannot be combined with a user in url")
        return self

    def build(self, context: Context | None = None) -> HttpCheck:
        return HttpCheck(self)


class HttpCheck:
    def __init__(self, spec: HttpSpec) -> None:
        self.spec = spec
        self.url = spec.url.get_secret_value()
        self.safe_url = redact_url(self.url)
        self.ranges = _status_ranges(spec.expect_status)
        self.has_equals = "equals" in spec.model_fields_set
        self.read_body = spec.body_contains is not None or spec.json_path is not None

    async def __call__(self, deadline: Deadline) -> Observation:
        spec = self.spec
        secret = {key: value.get_secret_value() for key, value in spec.headers.items()}
        headers = onward_headers(deadline, secret)
        session, connector = new_session(spec.tls_verify)
        async with session:
            try:
                async with session.request(spec.method, self.url, headers=headers) as response:
                    status, reason = response.status, response.reason or ""
                    body = await read_bounded(response) if self.read_body else b""
            except aiohttp.ClientError as exc:
                raise translate(exc, self.safe_url) from None
        if not any(low <= status <= high for low, high in self.ranges):
            wanted = ", ".join(str(s) for s in spec.expect_status)
            why = Reason.AUTH_FAILED if status in (401, 403) else Reason.UNHEALTHY
            raise CheckFailed(why, f"HTTP {status} from {self.safe_url} (expected {wanted})")
        self._check_body(body)
        message = f"HTTP {status} {reason}".rstrip()
        if spec.cert_warn_days is not None and connector.peer_cert is not None:
            return self._check_cert(connector.peer_cert, message)
        return Observation(message=message)

    def _check_body(self, body: bytes) -> None:
        spec = self.spec
        if spec.body_contains is not None and spec.body_contains not in body.decode(
            "utf-8", "replace"
        ):
            raise CheckFailed(Reason.UNHEALTHY, f"body lacks {spec.body_contains[:60]!r}")
        if spec.json_path is None:
            return
        try:
            document = json.loads(body)
        except ValueError:
            size = "the first 64 KiB of the body" if len(body) >= BODY_LIMIT else "the body"
            raise CheckFailed(Reason.PROTOCOL, f"{size} is not JSON") from None
        try:
            actual = json_lookup(document, spec.json_path)
        except KeyError:
            raise CheckFailed(Reason.UNHEALTHY, f"json {spec.json_path}: missing") from None
        if self.has_equals and not _same(actual, spec.equals):
            got, want = json.dumps(actual)[:60], json.dumps(spec.equals)[:60]
            raise CheckFailed(Reason.UNHEALTHY, f"json {spec.json_path} is {got}, expected {want}")

    def _check_cert(self, der: bytes, message: str) -> Observation:
        days = (cert_not_after(der) - datetime.now(UTC)).total_seconds() / 86400
        if days < 0:
            raise CheckFailed(Reason.TLS, f"tls: certificate expired {-days:.1f} days ago")
        text = f"{message}; certificate expires in {days:.1f} days"
        if self.spec.cert_warn_days is not None and days < self.spec.cert_warn_days:
            return Observation(Outcome.WARN, f"{text} (< {self.spec.cert_warn_days})")
        return Observation(message=text)
