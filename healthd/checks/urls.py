"""Connection URLs in checks: hiding their passwords, and naming what failed on the way in.

Kinds keep DSNs as `SecretStr` (so `repr(spec)` and `model_dump_json()` mask them), call
`redact()` before a URL reaches a message and `scrub()` on any driver error text, and
map the OS errors of a connect attempt with `network_failure()`.
"""

from __future__ import annotations

import socket
import ssl
from urllib.parse import SplitResult, parse_qs, parse_qsl, unquote, urlsplit

from healthd.errors import CheckError, CheckFailed
from healthd.model import Reason

MASK = "***"


def redact(url: str, *, user_is_secret: bool = False) -> str:
    """`url` fit for a message: `postgresql://app:***@db/app`.

    The password is masked, query values too (`?token=***`: they may hold secrets, and a
    DSN may carry `?password=`), the fragment is dropped. `user_is_secret` masks a lone
    user name as well (a token: `nats://***@bus:4222`, `https://***@host/`).
    """
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
    except ValueError:
        return "<unparseable URL>"
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        if colon:
            netloc = f"{user}:{MASK}@{hostport}"
        elif user_is_secret:
            netloc = f"{MASK}@{hostport}"
    query = "&".join(f"{key}={MASK}" for key, _ in parse_qsl(parts.query, keep_blank_values=True))
    return SplitResult(parts.scheme, netloc, parts.path, query, "").geturl()


def secrets_of(url: str) -> tuple[str, ...]:
    """The passwords in `url` (userinfo or `?password=`), raw and decoded, for `scrub()`."""
    try:
        parts = urlsplit(url)
        found = [parts.password or "", *parse_qs(parts.query).get("password", [])]
    except ValueError:
        return ()
    return tuple({form for p in found if p for form in (p, unquote(p))})


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """`text` with every occurrence of each secret replaced by `***`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text


def short(query: str, limit: int = 60) -> str:
    """A configured query, on one line and cut, for a pass message."""
    line = " ".join(query.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def network_failure(exc: BaseException, target: str, text: str) -> CheckError | None:
    """The failure for an OS-level error reaching `target` (already redacted), else None.

    `text` is the error's message, already scrubbed of secrets.
    """
    if isinstance(exc, socket.gaierror):
        return CheckFailed(Reason.DNS, f"dns: {text} ({target})")
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return CheckFailed(Reason.TLS, f"tls: {text} ({target})")
    if isinstance(exc, ConnectionRefusedError) or (
        isinstance(exc, OSError) and "Connect call failed" in text
    ):
        return CheckFailed(Reason.REFUSED, f"connection refused: {target}")
    if isinstance(exc, ConnectionError | EOFError):
        return CheckFailed(Reason.PROTOCOL, f"connection lost: {text} ({target})")
    if isinstance(exc, OSError) and not isinstance(exc, TimeoutError):
        return CheckFailed(Reason.UNEXPECTED, f"{type(exc).__name__}: {text} ({target})")
    return None


def driver_network_failure(
    exc: BaseException,
    cause: BaseException | None,
    target: str,
    text: str,
    secrets: tuple[str, ...],
) -> CheckError | None:
    """`network_failure` of the OS error a driver wraps (`cause`), else of `exc` itself.

    Drivers report a refused port as their own error ("Error 111 connecting to …",
    "2003 Can't connect …"); the wrapped OS error says why, so it is asked first.
    """
    if cause is not None:
        failure = network_failure(cause, target, scrub(str(cause), secrets))
        if failure is not None:
            return failure
    return network_failure(exc, target, text)
