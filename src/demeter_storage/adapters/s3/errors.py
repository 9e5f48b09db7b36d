"""Translation of botocore's exceptions into the package's own errors.

Transient failures (5xx, throttling, timeouts, dropped connections) become
:class:`~demeter_storage.domain.errors.StorageUnavailable`: the only error the
resilience layer retries and the circuit breaker counts. Authentication and
bucket problems become :class:`~demeter_storage.domain.errors.ConfigurationError`;
a missing key :class:`~demeter_storage.domain.errors.ObjectNotFound`; a lost
create-only write :class:`~demeter_storage.domain.errors.ObjectExists` and a
lost conditional delete :class:`~demeter_storage.domain.errors.ObjectChanged`
(neither retried nor counted by the breaker). Every message names the
operation, bucket, key and S3 error code.
"""

from __future__ import annotations

from typing import Final

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
    ResponseStreamingError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from urllib3.exceptions import HTTPError as Urllib3Error

from demeter_storage.domain.errors import (
    ConfigurationError,
    IntegrityError,
    ObjectChanged,
    ObjectExists,
    ObjectNotFound,
    StorageError,
    StorageUnavailable,
    ValidationError,
)

NOT_FOUND_CODES: Final = frozenset({"NoSuchKey", "404", "NotFound"})
TRANSIENT_CODES: Final = frozenset(
    {
        "SlowDown",
        "RequestTimeout",
        "InternalError",
        "ServiceUnavailable",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "500",
        "502",
        "503",
        "504",
    }
)
AUTH_CODES: Final = frozenset(
    {
        "AccessDenied",
        "403",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AuthorizationHeaderMalformed",
        "AllAccessDisabled",
        "AccountProblem",
        "InvalidSecurity",
    }
)
INTEGRITY_CODES: Final = frozenset({"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"})
PRECONDITION_CODES: Final = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict"})
"""A conditional request lost: the object exists, or is another version."""
CREATE_ONLY_WRITES: Final = frozenset({"PutObject", "CompleteMultipartUpload"})
"""The writes the stores send with ``If-None-Match: *``: losing means the key is taken.

``CopyObject`` and ``UploadPartCopy`` are not among them: their preconditions
pin the *source* (``x-amz-copy-source-if-match``), so losing means the source
was replaced (a plain StorageError, which the copy handles)."""
CONDITIONAL_DELETES: Final = frozenset({"DeleteObject"})
_CONNECTION_ERRORS: Final = (
    BotoConnectionError,
    EndpointConnectionError,
    ConnectionClosedError,
    ConnectTimeoutError,
    ReadTimeoutError,
    HTTPClientError,
    IncompleteReadError,
    ResponseStreamingError,
    Urllib3Error,
    ConnectionError,
    TimeoutError,
)
_CREDENTIAL_ERRORS: Final = (
    NoCredentialsError,
    PartialCredentialsError,
    CredentialRetrievalError,
    NoRegionError,
    ProfileNotFound,
)


def error_code(exc: ClientError) -> str:
    """The S3 error code of a ClientError (the HTTP status when the body had none)."""
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return str(error.get("Code") or status or "Unknown")


def http_status(exc: ClientError) -> int:
    """The HTTP status of a ClientError, or 0 when unknown."""
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def translate(
    exc: BaseException, *, operation: str, bucket: str, key: str | None = None
) -> BaseException:
    """Return the package error for ``exc`` (or ``exc`` itself if it is none of botocore's)."""
    if isinstance(exc, StorageError):
        return exc
    what = (
        f"S3 {operation} of {key!r} in bucket {bucket!r}"
        if key
        else f"S3 {operation} on bucket {bucket!r}"
    )
    if isinstance(exc, ClientError):
        if key is not None and error_code(exc) in PRECONDITION_CODES:
            if operation in CONDITIONAL_DELETES:
                return ObjectChanged(key, bucket)
            if operation in CREATE_ONLY_WRITES:
                return ObjectExists(key, bucket)
        return _from_client_error(exc, what, bucket, key)
    if isinstance(exc, _CREDENTIAL_ERRORS):
        return ConfigurationError(
            f"{what} failed: no usable credentials ({exc}); set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, a profile, or run where an instance or container role exists"
        )
    if isinstance(exc, ParamValidationError):
        return ValidationError(f"{what} was refused by botocore: {exc}")
    if isinstance(exc, _CONNECTION_ERRORS):
        return StorageUnavailable(
            f"{what} failed: cannot reach S3 ({type(exc).__name__}: {exc}); check the endpoint "
            "and the network, or retry later"
        )
    if isinstance(exc, RuntimeError) and "shutdown" in str(exc):
        return StorageError(f"{what} failed: the store was closed; create a new one")
    if isinstance(exc, BotoCoreError):
        return StorageError(f"{what} failed: {type(exc).__name__}: {exc}")
    return exc


NOT_IMPLEMENTED: Final = 501


def not_implemented(what: str, detail: str) -> ConfigurationError:
    """A server lacks a feature: no retry will help, and the breaker must not count it."""
    return ConfigurationError(
        f"{what} is not implemented by this S3-compatible server ({detail}); use a server "
        "that supports it, or leave the feature off"
    )


def _from_client_error(exc: ClientError, what: str, bucket: str, key: str | None) -> StorageError:
    code = error_code(exc)
    message = exc.response.get("Error", {}).get("Message", "")
    detail = f"{code}: {message}" if message else code
    if code in NOT_FOUND_CODES and key is not None:
        return ObjectNotFound(key, bucket, detail=code)
    if code == "NoSuchBucket" or (code in NOT_FOUND_CODES and key is None):
        return ConfigurationError(
            f"{what} failed: the bucket does not exist ({detail}); create it with "
            "ensure_bucket() or check S3_BUCKET_ORIGINAL / S3_BUCKET_VISUALIZATION"
        )
    status = http_status(exc)
    if status == NOT_IMPLEMENTED or code == "NotImplemented":
        return not_implemented(what, detail)
    if code in TRANSIENT_CODES or status >= 500:
        return StorageUnavailable(
            f"{what} failed: the server is unavailable ({detail}); retry later"
        )
    if code in AUTH_CODES:
        return ConfigurationError(
            f"{what} was refused ({detail}); check the credentials, their permissions on "
            "the bucket, and the clock"
        )
    if code in INTEGRITY_CODES:
        return IntegrityError(
            f"{what} failed: the bytes did not match their checksum ({detail}); retry"
        )
    return StorageError(f"{what} failed ({detail})")
