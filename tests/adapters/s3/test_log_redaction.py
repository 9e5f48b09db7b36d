"""The filter that keeps botocore's DEBUG logs free of credentials."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from botocore.credentials import Credentials, RefreshableCredentials

from demeter_storage.adapters.s3.log_redaction import REDACTED, CredentialRedactor, install


def record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("botocore.auth", logging.DEBUG, __file__, 1, message, args, None)


def test_static_and_refreshable_credentials_are_redacted_as_they_rotate() -> None:
    redactor = CredentialRedactor()
    static = Credentials("AKIDSTATIC", "static-secret-value", "static-token-value")
    tokens = iter(["first-rotating-token", "second-rotating-token"])

    def refresh() -> dict[str, str]:
        return {
            "access_key": "ASIAROTATING",
            "secret_key": "rotating-secret-value",
            "token": next(tokens),
            "expiry_time": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        }

    rotating = RefreshableCredentials.create_from_metadata(refresh(), refresh, "test")
    redactor.watch_credentials(static)
    redactor.watch_credentials(rotating)
    line = record("headers %s / %s", "static-token-value", "first-rotating-token")
    assert redactor.filter(line)
    assert line.getMessage() == f"headers {REDACTED} / {REDACTED}"
    rotating._token = "second-rotating-token"  # what a refresh does
    assert redactor.filter(line2 := record("x-amz-security-token:second-rotating-token"))
    assert line2.getMessage() == f"x-amz-security-token:{REDACTED}"
    untouched = record("nothing secret here: %d", 42)
    assert redactor.filter(untouched)
    assert untouched.args == (42,)


def test_short_values_are_not_taken_for_secrets() -> None:
    redactor = CredentialRedactor()
    credentials = Credentials("AKIDSHORT", "long-enough-secret", "abc")
    redactor.watch_credentials(credentials)
    assert redactor.secrets() == {"long-enough-secret"}


def test_the_filter_sits_on_the_loggers_that_log_requests() -> None:
    redactor = install()
    assert install() is redactor
    for name in ("botocore.auth", "botocore.endpoint", "urllib3.connectionpool"):
        assert redactor in logging.getLogger(name).filters


def test_a_broken_log_call_is_left_to_logging() -> None:
    redactor = CredentialRedactor()
    redactor.watch_credentials(Credentials("AKIDBROKEN", "long-enough-secret"))
    broken = record("%d", "not a number")
    assert redactor.filter(broken)
