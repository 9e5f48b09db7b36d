"""The one URL masker, and the shape rules of the settings' URLs."""

from __future__ import annotations

import logging

import pytest

from demeter_storage.adapters.s3.log_redaction import (
    REDACTED,
    CredentialRedactor,
    redactor,
    watch_url,
)
from demeter_storage.domain.urls import (
    endpoint_identity,
    http_url_problem,
    mask_url,
    redact,
    redis_url_problem,
    url_secrets,
)

PW = "pAsSwOrD-1234"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (f"postgresql+asyncpg://u:{PW}@h:5432/db", "postgresql+asyncpg://u:********@h:5432/db"),
        (f"redis://:{PW}@h:6379/0", "redis://:********@h:6379/0"),
        # What SQLAlchemy reads as a password may hold '/', '?', '#' and '@'.
        (f"postgresql://u:{PW}/x?y#z@h/db", "postgresql://u:********@h/db"),
        (f"redis://u:{PW}@x@h:6379", "redis://u:********@h:6379"),
        (f"redis://h:6379/0?password={PW}&db=1", "redis://h:6379/0?password=********&db=1"),
        (f"sqlite:///x.db?auth_token={PW}", "sqlite:///x.db?auth_token=********"),
        (f"u:{PW}@h", "u:********@h"),
        (f"u:a://{PW}@h", "u:********@h"),
        ("http://127.0.0.1:8333", "http://127.0.0.1:8333"),
        ("redis://user@h", "redis://user@h"),
        ("demeter-storage:s3:aws", "demeter-storage:s3:aws"),
    ],
)
def test_mask_url_hides_every_password_however_the_url_is_written(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    assert PW not in mask_url(url)


def test_redact_removes_a_urls_passwords_from_any_text() -> None:
    url = f"postgresql+asyncpg://u:{PW}%21@h/db"
    assert url_secrets(url) >= {f"{PW}%21", f"{PW}!"}
    text = f"driver said: bad password {PW}! for {url}"
    assert PW not in redact(text, url, None)


@pytest.mark.parametrize(
    ("url", "identity"),
    [
        ("http://ak:pw@Example.COM:9000/prefix/", "http://example.com:9000"),
        ("HTTPS://s3.amazonaws.com", "https://s3.amazonaws.com"),
        ("http://[::1]:8333", "http://[::1]:8333"),
    ],
)
def test_an_endpoints_identity_has_no_credentials_and_no_path(url: str, identity: str) -> None:
    assert endpoint_identity(url) == identity


def test_url_rules_accept_the_usual_urls() -> None:
    assert http_url_problem("https://photos.example.com/files") is None
    assert http_url_problem("http://minio_1:9000") is None
    assert http_url_problem("http://minio_1:9000", underscores=False) is not None
    assert redis_url_problem("redis://cache:6379/1") is None
    assert redis_url_problem("unix:///run/redis.sock") is None


def test_watched_url_passwords_are_redacted_from_library_logs() -> None:
    secret = "UrLpAsSwOrD-987654"
    watch_url(f"postgresql+asyncpg://u:{secret}@h/db")
    line = logging.LogRecord(
        "sqlalchemy.pool", logging.DEBUG, __file__, 1, "dsn %s", (secret,), None
    )
    assert redactor.filter(line)
    assert line.getMessage() == f"dsn {REDACTED}"
    assert secret in redactor.secrets()


def test_short_url_passwords_are_not_watched() -> None:
    local = CredentialRedactor()
    local.watch_text("pw")
    assert local.secrets() == set()
