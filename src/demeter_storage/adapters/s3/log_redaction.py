"""Keeping credentials out of the logs of the libraries underneath.

At DEBUG, botocore logs every request it signs and sends: the canonical
request (``botocore.auth``) and the headers (``botocore.endpoint``), session
token included. A host app that turns DEBUG on to chase a problem would write
its temporary credentials into its logs. The S3 adapters register their
clients' credentials here, and a filter on botocore's and urllib3's loggers
replaces any of them in a record with ``<redacted>``.

The composition root registers the passwords of the database and Redis URLs
the same way (:func:`watch_url`); the filter then also sits on the database
drivers', redis-py's and purgatory's loggers, and on this package's own. This
package never logs a URL unmasked; the filter is there for the libraries.

The filter reads the credentials' current values each time (refreshable ones
change), without triggering a refresh. It costs nothing while those loggers
are below DEBUG: a logger drops a record before its filters run.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any, Final

from demeter_storage.domain.urls import url_secrets

REDACTED: Final = "<redacted>"
MIN_SECRET_LENGTH: Final = 8
"""Shorter values are not credentials worth hiding, and would mangle ordinary text."""

# Filters apply to the records of the logger they are attached to, not to its
# children's: every module logger that may log a request is listed.
LOGGERS: Final = (
    "botocore",
    "botocore.auth",
    "botocore.awsrequest",
    "botocore.client",
    "botocore.credentials",
    "botocore.endpoint",
    "botocore.handlers",
    "botocore.hooks",
    "botocore.httpsession",
    "botocore.parsers",
    "botocore.retryhandler",
    "botocore.retries.standard",
    "botocore.signers",
    "botocore.utils",
    "boto3",
    "boto3.resources.action",
    "s3transfer",
    "s3transfer.futures",
    "s3transfer.tasks",
    "urllib3",
    "urllib3.connectionpool",
)
URL_LOGGERS: Final = (
    "sqlalchemy",
    "sqlalchemy.engine",
    "sqlalchemy.engine.Engine",
    "sqlalchemy.pool",
    "sqlalchemy.pool.impl.AsyncAdaptedQueuePool",
    "sqlalchemy.dialects",
    "asyncpg",
    "aiosqlite",
    "redis",
    "redis.asyncio",
    "redis.asyncio.connection",
    "redis.connection",
    "purgatory",
)
"""The loggers of the libraries that are handed the database and Redis URLs."""


class CredentialRedactor(logging.Filter):
    """Replaces registered credentials in log records (see the module's docs)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._credentials: weakref.WeakSet[Any] = weakref.WeakSet()
        self._texts: set[str] = set()

    def watch_text(self, secret: str) -> None:
        """Hide ``secret`` (a URL's password, say) from now on, if it is long enough."""
        if len(secret) >= MIN_SECRET_LENGTH:
            with self._lock:
                self._texts.add(secret)

    def watch_credentials(self, credentials: Any) -> None:
        """Hide the current values of a botocore credentials object, as long as it lives."""
        with self._lock:
            self._credentials.add(credentials)

    def secrets(self) -> set[str]:
        """Every value hidden right now."""
        with self._lock:
            watched = list(self._credentials)
            found = set(self._texts)
        for credentials in watched:
            # The private fields: the public accessors may refresh (a request).
            for name in ("_secret_key", "_token", "secret_key", "token"):
                value = credentials.__dict__.get(name)
                if isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH:
                    found.add(value)
        return found

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place; never drop it."""
        secrets = self.secrets()
        if not secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: logging reports it itself
            return True
        redacted = message
        for secret in sorted(secrets, key=len, reverse=True):  # no partial leftovers
            redacted = redacted.replace(secret, REDACTED)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


redactor = CredentialRedactor()
_installed = False
_install_lock = threading.Lock()


def install() -> CredentialRedactor:
    """Attach the redactor to the libraries' loggers (once); return it."""
    global _installed  # noqa: PLW0603 - one process-wide installation
    with _install_lock:
        if not _installed:
            for name in LOGGERS + URL_LOGGERS:
                logging.getLogger(name).addFilter(redactor)
            _installed = True
        # This package's module loggers, as many as are imported by now (a filter
        # acts only on its own logger's records, not on its children's).
        for name in list(logging.Logger.manager.loggerDict):
            if name == "demeter_storage" or name.startswith("demeter_storage."):
                logging.getLogger(name).addFilter(redactor)
    return redactor


def watch_url(url: str) -> None:
    """Hide the passwords ``url`` holds (userinfo or ``?password=``) from every log."""
    install()
    for secret in url_secrets(url):
        redactor.watch_text(secret)


def watch_client(client: Any) -> None:
    """Hide the credentials a boto3 client signs with from every log."""
    install()
    credentials = getattr(getattr(client, "_request_signer", None), "_credentials", None)
    if credentials is not None:
        redactor.watch_credentials(credentials)
