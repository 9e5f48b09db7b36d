"""The obstore store beyond the contract: its errors, retries, settings and checks before I/O.

Its behaviour on a real server is in ``test_obstore_seaweedfs.py``.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip(
    "obstore", reason="obstore is not installed (pip install 'demeter-storage[fast]')"
)
from obstore import exceptions as obstore_exceptions

from demeter_storage import (
    ConfigurationError,
    IntegrityError,
    ObjectExists,
    ObjectNotFound,
    Secret,
    StorageError,
    StorageUnavailable,
    ValidationError,
)
from demeter_storage.adapters.resilience.store import ResilientImageStore
from demeter_storage.adapters.s3.config import MiB, S3Config
from demeter_storage.adapters.s3.obstore.config import build_obstore_store
from demeter_storage.adapters.s3.obstore.errors import translate
from demeter_storage.adapters.s3.obstore.store import ObstoreImageStore
from demeter_storage.adapters.s3.obstore.streams import start_after
from demeter_storage.testing import no_sleep
from tests.adapters.s3.fake_s3 import FakeS3Server, fake_config

MULTIPART = {"multipart_threshold": 5 * MiB, "part_size": 5 * MiB, "multipart_concurrency": 2}


async def _collect(iterator: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in iterator]


@pytest.fixture
def fake_store(fake_s3: FakeS3Server) -> ObstoreImageStore:
    return ObstoreImageStore("photos", config=fake_config(fake_s3))


# Errors


@pytest.mark.parametrize(
    ("answer", "error", "code"),
    [
        (("error", 500, "InternalError"), StorageUnavailable, "InternalError"),
        (("error", 503, "SlowDown"), StorageUnavailable, "SlowDown"),
        (("error", 429, "TooManyRequests"), StorageUnavailable, "TooManyRequests"),
        (("drop",), StorageUnavailable, "cannot reach S3"),
        (("stall",), StorageUnavailable, "Timeout"),
        (("error", 403, "AccessDenied"), ConfigurationError, "AccessDenied"),
        (("error", 501, "NotImplemented"), ConfigurationError, "not implemented"),
        (("error", 403, "SignatureDoesNotMatch"), ConfigurationError, "SignatureDoesNotMatch"),
        (("error", 404, "NoSuchBucket"), ConfigurationError, "bucket does not exist"),
        (("error", 404, "NoSuchKey"), ObjectNotFound, "NoSuchKey"),
        (("error", 400, "BadDigest"), IntegrityError, "BadDigest"),
        (("error", 412, "PreconditionFailed"), StorageError, "PreconditionFailed"),
        (("error", 400, "InvalidRequest"), StorageError, "InvalidRequest"),
    ],
)
async def test_obstore_errors_become_the_package_errors_after_one_request(
    fake_s3: FakeS3Server,
    fake_store: ObstoreImageStore,
    answer: tuple[Any, ...],
    error: type[StorageError],
    code: str,
) -> None:
    fake_s3.script = [answer]
    with pytest.raises(StorageError) as caught:
        await fake_store.get("s/a.jpg")
    assert type(caught.value) is error
    message = str(caught.value)
    assert code in message
    assert "'s/a.jpg'" in message and "photos" in message
    if error is not ObjectNotFound:
        assert message.startswith("S3 GetObject of 's/a.jpg' in bucket 'photos'")
    # The cause is kept for debugging; obstore never retried on its own.
    assert caught.value.__cause__ is not None
    assert len(fake_s3.requests) == 1


@pytest.mark.parametrize(
    ("operation", "expected"),
    [
        ("put", StorageUnavailable),
        ("head", StorageUnavailable),
        ("delete", StorageUnavailable),
        ("delete_many", StorageUnavailable),
        ("list", StorageUnavailable),
        ("stream", StorageUnavailable),
    ],
)
async def test_every_operation_translates_its_errors(
    fake_s3: FakeS3Server, fake_store: ObstoreImageStore, operation: str, expected: type
) -> None:
    fake_s3.script = [("error", 503, "SlowDown")]
    calls = {
        "put": lambda: fake_store.put("s/a.jpg", b"x", content_type="image/jpeg"),
        "head": lambda: fake_store.head("s/a.jpg"),
        "delete": lambda: fake_store.delete("s/a.jpg"),
        "delete_many": lambda: fake_store.delete_many(["s/a.jpg", "s/b.jpg"]),
        "list": lambda: _collect(fake_store.list("s/")),
        "stream": lambda: _collect(fake_store.stream("s/a.jpg")),
    }
    with pytest.raises(expected) as caught:
        await calls[operation]()
    assert not isinstance(caught.value, obstore_exceptions.BaseError)
    assert "photos" in str(caught.value)


async def test_a_body_cut_short_is_a_transient_failure(
    fake_s3: FakeS3Server, fake_store: ObstoreImageStore
) -> None:
    fake_s3.script = [("cut",)]
    with pytest.raises(StorageUnavailable, match="cannot reach S3"):
        await _collect(fake_store.stream("s/a.jpg", chunk_size=4))
    fake_s3.script = [("cut",)]
    with pytest.raises(StorageUnavailable, match=r"GetObject of 's/a\.jpg'"):
        await fake_store.get("s/a.jpg")


def test_stable_presigned_urls_are_not_supported_and_say_so(
    fake_s3: FakeS3Server, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING"):
        ObstoreImageStore("photos", config=fake_config(fake_s3, presign_stable_seconds=3600))
    assert "presign_stable_seconds=3600 is ignored" in caplog.text


async def test_a_head_refused_without_an_error_body_names_the_status(
    fake_s3: FakeS3Server, fake_store: ObstoreImageStore
) -> None:
    fake_s3.script = [("error", 403, "AccessDenied")]  # HEAD answers carry no body
    with pytest.raises(ConfigurationError, match="403"):
        await fake_store.head("s/a.jpg")
    fake_s3.script = [("error", 404, "NoSuchKey")]
    with pytest.raises(ObjectNotFound):
        await fake_store.head("s/a.jpg")
    assert await fake_store.exists("s/a.jpg")  # the script is empty again: 200


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (obstore_exceptions.GenericError("Generic S3 error: something odd"), StorageError),
        (obstore_exceptions.PermissionDeniedError("denied, status code: 403"), ConfigurationError),
        (obstore_exceptions.UnauthenticatedError("who are you"), ConfigurationError),
        (obstore_exceptions.PreconditionError("status code: 412"), StorageError),
        (obstore_exceptions.AlreadyExistsError("exists"), StorageError),
        (obstore_exceptions.NotSupportedError("no"), ConfigurationError),
        (obstore_exceptions.InvalidPathError("bad path"), ValidationError),
        (obstore_exceptions.JoinError("tokio"), StorageError),
        (ValueError("Could not parse path"), ValidationError),
        (ConnectionResetError("reset"), StorageUnavailable),
        (TimeoutError("slow"), StorageUnavailable),
    ],
)
def test_translate_maps_each_kind_of_failure(raised: Exception, expected: type) -> None:
    error = translate(raised, operation="GetObject", bucket="photos", key="s/a.jpg")
    assert type(error) is expected
    assert "'s/a.jpg'" in str(error) and "photos" in str(error)


@pytest.mark.parametrize(
    "raised",
    [
        obstore_exceptions.AlreadyExistsError("Object at location s/a.jpg already exists"),
        obstore_exceptions.PreconditionError("status code: 412"),
    ],
)
def test_a_taken_key_is_object_exists_for_a_put_only(raised: Exception) -> None:
    error = translate(raised, operation="PutObject", bucket="photos", key="s/a.jpg")
    assert isinstance(error, ObjectExists)
    assert (error.key, error.bucket) == ("s/a.jpg", "photos")
    # A ranged read's If-Match that lost says the object was replaced, nothing more.
    for operation in ("GetObject", "MultipartUpload"):
        assert (
            type(translate(raised, operation=operation, bucket="photos", key="k")) is StorageError
        )


def test_translate_leaves_other_exceptions_alone() -> None:
    broken = RuntimeError("the data source broke")
    assert translate(broken, operation="PutObject", bucket="photos") is broken
    ours = StorageUnavailable("already ours")
    assert translate(ours, operation="PutObject", bucket="photos") is ours


def test_a_failed_bulk_delete_says_what_was_left() -> None:
    raised = obstore_exceptions.GenericError(
        "Generic S3 error: DeleteObjects request failed for key s/a.jpg: Access Denied. "
        "(code: AccessDenied)"
    )
    error = translate(raised, operation="DeleteObjects", bucket="photos")
    assert type(error) is StorageError
    assert "s/a.jpg" in str(error) and "AccessDenied" in str(error)


# Retries live in one layer: the resilience wrapper's


async def test_the_resilient_wrapper_retries_transient_faults(
    fake_s3: FakeS3Server, fake_store: ObstoreImageStore
) -> None:
    fake_s3.script = [("error", 503, "SlowDown"), ("drop",)]
    store = ResilientImageStore(fake_store, retry_attempts=3, sleep=no_sleep)
    assert await store.get("s/a.jpg") == b"hello"
    assert len(fake_s3.requests) == 3
    fake_s3.requests.clear()
    fake_s3.script = [("error", 500, "InternalError")]
    info = await store.put("s/b.jpg", b"bytes", content_type="image/jpeg")
    assert info.sha256 == hashlib.sha256(b"bytes").hexdigest()
    assert [request.split()[0] for request in fake_s3.requests] == ["PUT", "PUT"]


async def test_the_resilient_wrapper_never_retries_refusals(
    fake_s3: FakeS3Server, fake_store: ObstoreImageStore
) -> None:
    fake_s3.script = [("error", 403, "AccessDenied"), ("error", 404, "NoSuchKey")]
    store = ResilientImageStore(fake_store, retry_attempts=3, sleep=no_sleep)
    with pytest.raises(ConfigurationError):
        await store.get("s/a.jpg")
    with pytest.raises(ObjectNotFound):
        await store.get("s/a.jpg")
    assert len(fake_s3.requests) == 2


def test_the_built_store_never_retries_and_follows_the_settings() -> None:
    config = S3Config(
        endpoint_url="http://127.0.0.1:8333",
        region="eu-west-1",
        addressing_style="path",
        access_key_id="AKIDEXAMPLE",
        secret_access_key=Secret("secret"),
        connect_timeout=2.0,
        read_timeout=7.0,
    )
    store = build_obstore_store("photos", config)
    assert (store.retry_config or {}).get("max_retries") == 0
    # obstore reports its settings as strings.
    assert store.client_options == {
        "allow_http": "true",
        "connect_timeout": "2s",
        "read_timeout": "7s",
        "timeout": "1day",  # not obstore's 30 s, which would cut large transfers short
    }
    assert store.config["virtual_hosted_style_request"] == "false"
    assert store.config["endpoint"] == "http://127.0.0.1:8333"
    assert store.config["region"] == "eu-west-1"
    virtual = build_obstore_store(
        "photos",
        S3Config(
            endpoint_url="https://s3.example.com",
            addressing_style="virtual",
            access_key_id="AKIDEXAMPLE",
            secret_access_key=Secret("secret"),
        ),
    )
    assert virtual.config["virtual_hosted_style_request"] == "true"
    assert virtual.config["endpoint"] == "https://photos.s3.example.com"
    assert "allow_http" not in (virtual.client_options or {})


def test_an_unknown_profile_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="ProfileNotFound"):
        ObstoreImageStore("photos", config=S3Config(profile=f"missing-{uuid.uuid4().hex}"))


def test_secrets_never_show_in_reprs() -> None:
    config = S3Config(
        access_key_id="AKIDEXAMPLE",
        secret_access_key=Secret("wJalrXUtnFEMI/SECRET"),
        session_token=Secret("FwoGZXIvYXdzTOKEN"),
        region="eu-west-1",
    )
    store = ObstoreImageStore("photos", config=config)
    for text in (repr(config), repr(store)):
        assert "wJalrXUtnFEMI" not in text
        assert "FwoGZXIvYXdz" not in text


async def test_metadata_keys_obstore_would_send_as_headers_are_refused_before_io(
    fake_s3: FakeS3Server, fake_store: ObstoreImageStore
) -> None:
    with pytest.raises(ValidationError, match="cache-control"):
        await fake_store.put(
            "s/a.jpg", b"x", content_type="image/jpeg", metadata={"cache-control": "no-store"}
        )
    assert fake_s3.requests == []


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [("s1", "s0\U0010ffff"), ("s1/ab", "s1/aa\U0010ffff"), ("s1/0", None)],
)
def test_listings_start_just_before_a_partial_prefix(prefix: str, expected: str | None) -> None:
    assert start_after(prefix) == expected
