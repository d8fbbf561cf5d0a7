"""Password hiding for connection URLs (healthd.checks.urls): pure functions."""

from __future__ import annotations

import pytest

from healthd.checks.urls import redact, scrub, secrets_of


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:s3cret@db:5432/app", "postgresql://app:***@db:5432/app"),
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("mysql://root@db/test", "mysql://root@db/test"),
        ("postgresql://app:p@ss@db/app", "postgresql://app:***@db/app"),
        (
            "postgresql://db/app?password=s3cret&sslmode=require",
            "postgresql://db/app?password=***&sslmode=***",
        ),
        ("https://u:p@h:8443/x?a=1#frag", "https://u:***@h:8443/x?a=***"),
    ],
)
def test_redact_masks_the_password(url: str, shown: str) -> None:
    """The password (in userinfo or the query) never survives redaction; the rest does."""
    assert redact(url) == shown


def test_redact_can_hide_a_lone_user() -> None:
    """A lone user name that is really a token (nats, http) is masked when asked."""
    assert redact("nats://t0ken@bus:4222", user_is_secret=True) == "nats://***@bus:4222"
    assert redact("mysql://root@db/test", user_is_secret=False) == "mysql://root@db/test"


def test_scrub_removes_raw_and_decoded_password() -> None:
    """Driver text quoting the password, raw or percent-decoded, is scrubbed."""
    secrets = secrets_of("postgresql://app:p%40ss@db/app?password=other")
    assert scrub("auth p%40ss / p@ss / other", secrets) == "auth *** / *** / ***"


def test_no_password_means_nothing_to_scrub() -> None:
    """A URL without a password yields no secrets, so text is left alone."""
    assert secrets_of("redis://cache:6379/0") == ()
    assert scrub("PONG", ()) == "PONG"
