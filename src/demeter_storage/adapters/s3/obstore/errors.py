"""Translation of obstore's exceptions into the package's own errors.

obstore raises a few exception classes (``FileNotFoundError`` for a missing
object, ``PermissionDeniedError``, ``PreconditionError``...) and puts
everything else into ``GenericError``, whose message carries the HTTP status
and the S3 error body. The rules follow :mod:`~demeter_storage.adapters.s3.errors`
so that both S3 adapters fail alike: transient failures (5xx, throttling,
timeouts, dropped connections) become
:class:`~demeter_storage.domain.errors.StorageUnavailable`, the only error
the resilience layer retries; authentication and bucket problems become
:class:`~demeter_storage.domain.errors.ConfigurationError`; a missing key
:class:`~demeter_storage.domain.errors.ObjectNotFound`; a create-only put
(``mode="create"``) that finds the key taken
:class:`~demeter_storage.domain.errors.ObjectExists`. Every message names
the operation, bucket, key and S3 error code (or HTTP status).
"""

from __future__ import annotations

import re
from typing import Final

from obstore import exceptions as obstore_exceptions

from demeter_storage.adapters.s3.errors import (
    AUTH_CODES,
    CREATE_ONLY_WRITES,
    INTEGRITY_CODES,
    NOT_IMPLEMENTED,
    TRANSIENT_CODES,
    not_implemented,
)
from demeter_storage.domain.errors import (
    ConfigurationError,
    IntegrityError,
    ObjectExists,
    ObjectNotFound,
    StorageError,
    StorageUnavailable,
    ValidationError,
)

# obstore emits FileNotFoundError; older versions raised their own NotFoundError
# (deprecated, so looked up by name rather than imported).
_NOT_FOUND: Final = (
    FileNotFoundError,
    getattr(obstore_exceptions, "NotFoundError", FileNotFoundError),
)
_REFUSED: Final = (
    obstore_exceptions.PermissionDeniedError,
    obstore_exceptions.UnauthenticatedError,
)
_PRECONDITION: Final = (
    obstore_exceptions.PreconditionError,
    obstore_exceptions.AlreadyExistsError,
    obstore_exceptions.NotModifiedError,
)
_TAKEN: Final = (obstore_exceptions.AlreadyExistsError, obstore_exceptions.PreconditionError)
"""What a create-only put raises for a taken key: obstore turns a 412 into
``AlreadyExistsError`` and a 409 ``ConditionalRequestConflict`` too; a
``PreconditionError`` is accepted for servers that answer otherwise."""
_MISCONFIGURED: Final = (
    obstore_exceptions.NotSupportedError,
    obstore_exceptions.UnknownConfigurationKeyError,
)
_CODE: Final = re.compile(r"<Code>([^<]{1,100})</Code>|\(code: ([A-Za-z0-9.]{1,100})\)")
_MESSAGE: Final = re.compile(r"<Message>([^<]{0,300})</Message>")
_STATUS: Final = re.compile(r"status code: (\d{3})|\bstatus: (\d{3})\b")
_HTTP_KIND: Final = re.compile(r"\bkind: (\w+)")
_DELETE_FAILED: Final = "DeleteObjects request failed"
TOO_MANY_REQUESTS: Final = 429
RANGE_NOT_SATISFIABLE: Final = 416


def error_code(message: str) -> str | None:
    """The S3 error code in an obstore error message, if the server sent one."""
    found = _CODE.search(message)
    return (found.group(1) or found.group(2)) if found else None


def http_status(message: str) -> int:
    """The HTTP status in an obstore error message, or 0 when there is none."""
    found = _STATUS.search(message)
    return int(found.group(1) or found.group(2)) if found else 0


def translate(
    exc: BaseException, *, operation: str, bucket: str, key: str | None = None
) -> BaseException:
    """Return the package error for ``exc`` (or ``exc`` itself if it is not obstore's).

    Exceptions from the caller's own data source (an async iterable that
    fails, say) pass through unchanged, as in the boto3 adapter.
    """
    if isinstance(exc, StorageError):
        return exc
    what = (
        f"S3 {operation} of {key!r} in bucket {bucket!r}"
        if key
        else f"S3 {operation} on bucket {bucket!r}"
    )
    if isinstance(exc, (*_NOT_FOUND, obstore_exceptions.BaseError)):
        return _from_obstore(exc, what, bucket, key, operation)
    if isinstance(exc, ValueError):
        # obstore checks paths and arguments itself; ours were checked before.
        return ValidationError(f"{what} was refused by obstore: {_headline(exc)}")
    if isinstance(exc, ConnectionError | TimeoutError):
        return StorageUnavailable(
            f"{what} failed: cannot reach S3 ({type(exc).__name__}: {exc}); check the endpoint "
            "and the network, or retry later"
        )
    return exc


def _headline(exc: BaseException) -> str:
    """The first line of obstore's message (the rest is a debug dump)."""
    return str(exc).split("\n", 1)[0].strip()[:500]


def _detail(code: str | None, status: int, message: str) -> str:
    found = _MESSAGE.search(message)
    text = found.group(1).strip() if found else ""
    label = code or (str(status) if status else "no error code")
    return f"{label}: {text}" if text else label


def _from_obstore(
    exc: BaseException, what: str, bucket: str, key: str | None, operation: str
) -> StorageError:
    message = str(exc)
    code = error_code(message)
    status = http_status(message)
    detail = _detail(code, status, message)
    if code == "NoSuchBucket" or (isinstance(exc, _NOT_FOUND) and key is None):
        return ConfigurationError(
            f"{what} failed: the bucket does not exist ({detail}); create it with "
            "ensure_bucket() or check S3_BUCKET_ORIGINAL / S3_BUCKET_VISUALIZATION"
        )
    if isinstance(exc, _NOT_FOUND) and key is not None:
        return ObjectNotFound(key, bucket, detail=code or str(status or 404))
    if _DELETE_FAILED in message:
        return StorageError(f"{what} left object(s) behind: {_headline(exc)}; retry the delete")
    if status == NOT_IMPLEMENTED or code == "NotImplemented":
        return not_implemented(what, detail)
    if isinstance(exc, _TAKEN) and key is not None and operation in CREATE_ONLY_WRITES:
        return ObjectExists(key, bucket)
    if isinstance(exc, _PRECONDITION):
        # As in the boto3 adapter: a failed precondition is no transient fault.
        return StorageError(f"{what} failed ({detail or 'PreconditionFailed'})")
    if (
        (code is not None and code in TRANSIENT_CODES)
        or status >= 500
        or status == TOO_MANY_REQUESTS
    ):
        return StorageUnavailable(
            f"{what} failed: the server is unavailable ({detail}); retry later"
        )
    if isinstance(exc, _REFUSED) or (code is not None and code in AUTH_CODES) or status == 403:
        return ConfigurationError(
            f"{what} was refused ({detail}); check the credentials, their permissions on "
            "the bucket, and the clock"
        )
    if code is not None and code in INTEGRITY_CODES:
        return IntegrityError(
            f"{what} failed: the bytes did not match their checksum ({detail}); retry"
        )
    if isinstance(exc, _MISCONFIGURED):
        return ConfigurationError(f"{what} is not possible with these settings: {_headline(exc)}")
    if isinstance(exc, obstore_exceptions.InvalidPathError):
        return ValidationError(f"{what} was refused by obstore: {_headline(exc)}")
    if not status and "HTTP error" in message:
        # Connection refused or reset, a timeout, a body cut short: no answer came.
        kinds = [kind for kind in _HTTP_KIND.findall(message) if kind not in ("Request", "Body")]
        reason = kinds[0] if kinds else "connection"
        return StorageUnavailable(
            f"{what} failed: cannot reach S3 ({reason}: {_headline(exc)}); check the endpoint "
            "and the network, or retry later"
        )
    return StorageError(f"{what} failed ({detail}): {_headline(exc)}")
