"""botocore exceptions become the package's own errors."""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ProfileNotFound,
    ResponseStreamingError,
    UnknownServiceError,
)

from demeter_storage import (
    ConfigurationError,
    IntegrityError,
    ObjectNotFound,
    StorageError,
    StorageUnavailable,
    ValidationError,
)
from demeter_storage.adapters.s3.errors import translate


def client_error(code: str, status: int, message: str = "msg") -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "GetObject",
    )


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("NoSuchKey", 404, ObjectNotFound),
        ("404", 404, ObjectNotFound),
        ("NoSuchBucket", 404, ConfigurationError),
        ("AccessDenied", 403, ConfigurationError),
        ("InvalidAccessKeyId", 403, ConfigurationError),
        ("ExpiredToken", 400, ConfigurationError),
        ("SlowDown", 503, StorageUnavailable),
        ("InternalError", 500, StorageUnavailable),
        ("RequestTimeout", 400, StorageUnavailable),
        ("WeirdServerThing", 502, StorageUnavailable),
        ("BadDigest", 400, IntegrityError),
        ("EntityTooLarge", 400, StorageError),
    ],
)
def test_client_errors(code: str, status: int, expected: type[Exception]) -> None:
    error = translate(client_error(code, status), operation="GetObject", bucket="b", key="s/k")
    assert type(error) is expected
    if not isinstance(error, ObjectNotFound):
        assert code in str(error)
        assert "'s/k'" in str(error)
        assert "'b'" in str(error)


def test_a_missing_object_without_a_key_is_a_missing_bucket() -> None:
    error = translate(client_error("404", 404), operation="HeadBucket", bucket="b")
    assert isinstance(error, ConfigurationError)
    assert "ensure_bucket" in str(error)


def test_a_client_error_without_a_code_uses_the_status() -> None:
    bare = ClientError({"ResponseMetadata": {"HTTPStatusCode": 503}}, "HeadObject")
    assert isinstance(translate(bare, operation="HeadObject", bucket="b"), StorageUnavailable)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (EndpointConnectionError(endpoint_url="http://x"), StorageUnavailable),
        (ConnectTimeoutError(endpoint_url="http://x"), StorageUnavailable),
        (ResponseStreamingError(error="reset"), StorageUnavailable),
        (ConnectionResetError("reset"), StorageUnavailable),
        (NoCredentialsError(), ConfigurationError),
        (ProfileNotFound(profile="p"), ConfigurationError),
        (ParamValidationError(report="bad"), ValidationError),
        (UnknownServiceError(service_name="s", known_service_names="x"), StorageError),
        (RuntimeError("cannot schedule new futures after shutdown"), StorageError),
    ],
)
def test_botocore_and_network_errors(exc: Exception, expected: type[Exception]) -> None:
    assert type(translate(exc, operation="GetObject", bucket="b", key="k")) is expected


def test_foreign_and_own_errors_pass_through() -> None:
    own = ObjectNotFound("k")
    assert translate(own, operation="x", bucket="b") is own
    foreign = KeyError("not ours")
    assert translate(foreign, operation="x", bucket="b") is foreign
