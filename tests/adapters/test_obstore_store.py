"""The obstore store beyond the contract: errors, retries, the boto3 store's objects, URLs."""

from __future__ import annotations

import asyncio
import hashlib
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

pytest.importorskip(
    "obstore", reason="obstore is not installed (pip install 'demeter-storage[fast]')"
)
from obstore import exceptions as obstore_exceptions
from obstore.store import S3Store

from demeter_storage import (
    ConfigurationError,
    IntegrityError,
    ObjectNotFound,
    Secret,
    StorageError,
    StorageUnavailable,
    ValidationError,
)
from demeter_storage.adapters.obstore import ObstoreImageStore
from demeter_storage.adapters.obstore_config import build_obstore_store
from demeter_storage.adapters.obstore_errors import translate
from demeter_storage.adapters.obstore_streams import start_after
from demeter_storage.adapters.resilience import ResilientImageStore
from demeter_storage.adapters.s3 import SHA256_METADATA, S3ImageStore
from demeter_storage.adapters.s3_config import MiB, S3Config, TemporaryCredentials
from demeter_storage.domain.lifecycle import LifecyclePolicy, LifecycleRule
from demeter_storage.testing import SeaweedFSServer, no_sleep
from demeter_storage.testing.contract import pattern_sha256, pattern_source
from tests.adapters.fake_s3 import FakeS3Server, fake_config

MULTIPART = {"multipart_threshold": 5 * MiB, "part_size": 5 * MiB, "multipart_concurrency": 2}


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


# On a real server with authentication on


def _http(url: str, method: str = "GET", data: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


async def _collect(iterator: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in iterator]


@pytest.fixture
async def bucket(seaweedfs_server: SeaweedFSServer) -> str:
    name = f"obstore-{uuid.uuid4().hex[:12]}"
    store = S3ImageStore(name, config=seaweedfs_server.s3_config())
    await store.ensure_bucket()
    await store.aclose()
    return name


@pytest.fixture
async def seaweed_store(
    seaweedfs_server: SeaweedFSServer, bucket: str
) -> AsyncIterator[ObstoreImageStore]:
    store = ObstoreImageStore(bucket, config=seaweedfs_server.s3_config(**MULTIPART))
    yield store
    await store.aclose()


@pytest.fixture
async def boto3_store(
    seaweedfs_server: SeaweedFSServer, bucket: str
) -> AsyncIterator[S3ImageStore]:
    store = S3ImageStore(bucket, config=seaweedfs_server.s3_config(**MULTIPART))
    yield store
    await store.aclose()


@pytest.mark.parametrize("size", [1000, 12 * MiB], ids=["single", "multipart"])
async def test_objects_cross_between_the_boto3_and_obstore_stores(
    seaweed_store: ObstoreImageStore, boto3_store: S3ImageStore, size: int
) -> None:
    metadata = {"camera": "Pixel 9", "row": "7"}
    expected = pattern_sha256(size)
    for writer, reader, key in (
        (boto3_store, seaweed_store, "s/by-boto3.tif"),
        (seaweed_store, boto3_store, "s/by-obstore.tif"),
    ):
        info = await writer.put(
            key, pattern_source(size), content_type="image/tiff", metadata=metadata
        )
        assert info.sha256 == expected
        head = await reader.head(key)
        assert (head.size, head.content_type, head.sha256) == (size, "image/tiff", expected)
        assert dict(head.metadata) == metadata
        digest = hashlib.sha256()
        async for chunk in reader.stream(key, chunk_size=MiB):
            assert len(chunk) <= MiB
            digest.update(chunk)
        assert digest.hexdigest() == expected
        # Both stores describe the object alike.
        mine = await writer.head(key)
        assert (mine.size, mine.content_type, mine.sha256, dict(mine.metadata)) == (
            head.size,
            head.content_type,
            head.sha256,
            dict(head.metadata),
        )
    listed_by_obstore = [(i.key, i.size) async for i in seaweed_store.list("s/")]
    listed_by_boto3 = [(i.key, i.size) async for i in boto3_store.list("s/")]
    assert listed_by_obstore == listed_by_boto3 == sorted(listed_by_boto3)


async def test_streamed_multipart_puts_record_their_sha256(
    seaweed_store: ObstoreImageStore, boto3_store: S3ImageStore
) -> None:
    info = await seaweed_store.put(
        "s/big.tif", pattern_source(11 * MiB), content_type="image/tiff", metadata={"row": "1"}
    )
    raw = boto3_store.client.head_object(Bucket=seaweed_store.name, Key="s/big.tif")
    assert raw["Metadata"][SHA256_METADATA] == info.sha256 == pattern_sha256(11 * MiB)
    assert raw["ContentType"] == "image/tiff"
    assert info.etag == raw["ETag"]


async def test_a_failing_source_mid_multipart_leaves_nothing(
    seaweed_store: ObstoreImageStore, boto3_store: S3ImageStore
) -> None:
    async def breaks_after_two_parts() -> AsyncIterator[bytes]:
        async for chunk in pattern_source(11 * MiB):
            yield chunk
        raise RuntimeError("the data source broke")

    with pytest.raises(RuntimeError, match="data source broke"):
        await seaweed_store.put("s/broken.tif", breaks_after_two_parts(), content_type="image/tiff")
    assert not await seaweed_store.exists("s/broken.tif")
    uploads = boto3_store.client.list_multipart_uploads(Bucket=seaweed_store.name)
    assert uploads.get("Uploads", []) == []


async def test_a_cancelled_multipart_put_is_aborted(
    seaweed_store: ObstoreImageStore, boto3_store: S3ImageStore
) -> None:
    def uploads() -> list[str]:
        listing = boto3_store.client.list_multipart_uploads(Bucket=seaweed_store.name)
        return [upload["Key"] for upload in listing.get("Uploads", [])]

    stalled = asyncio.Event()

    async def stalls_after_two_parts() -> AsyncIterator[bytes]:
        async for chunk in pattern_source(11 * MiB):
            yield chunk
        stalled.set()
        await asyncio.Event().wait()  # the client stalls forever
        yield b""  # pragma: no cover

    task = asyncio.create_task(
        seaweed_store.put("s/stalled.tif", stalls_after_two_parts(), content_type="image/tiff")
    )
    await asyncio.wait_for(stalled.wait(), 30)
    assert await asyncio.to_thread(uploads) == ["s/stalled.tif"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(uploads) == []
    assert not await seaweed_store.exists("s/stalled.tif")


async def test_the_server_checks_a_crc64_of_every_upload(
    seaweed_store: ObstoreImageStore, boto3_store: S3ImageStore
) -> None:
    assert seaweed_store.store.config["checksum_algorithm"].upper() == "CRC64NVME"
    assert seaweed_store.store.config["unsigned_payload"] == "true"  # the SHA-256 once only
    await seaweed_store.put("s/small.jpg", b"jpeg", content_type="image/jpeg")
    await seaweed_store.put("s/big.tif", pattern_source(6 * MiB), content_type="image/tiff")

    def checksums(key: str) -> dict[str, str]:
        raw = boto3_store.client.head_object(
            Bucket=seaweed_store.name, Key=key, ChecksumMode="ENABLED"
        )
        return {name: value for name, value in raw.items() if name.startswith("Checksum")}

    assert "ChecksumCRC64NVME" in checksums("s/small.jpg")
    # The copy that records a multipart object's SHA-256 leaves a CRC32 (botocore's).
    assert {"ChecksumCRC64NVME", "ChecksumCRC32"} & set(checksums("s/big.tif"))


async def test_presigned_urls_work_on_a_server_that_checks_signatures(
    seaweed_store: ObstoreImageStore,
) -> None:
    await seaweed_store.put("s/a b+c.jpg", b"jpeg bytes", content_type="image/jpeg")
    before = datetime.now(UTC).replace(microsecond=0)
    get_url = await seaweed_store.presign("s/a b+c.jpg", expires_in=60)
    assert _http(get_url.url) == (200, b"jpeg bytes")
    query = parse_qs(urlsplit(get_url.url).query)
    assert query["X-Amz-Expires"] == ["60"]
    signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert get_url.expires_at == signed_at + timedelta(seconds=60)
    assert before <= signed_at <= datetime.now(UTC)
    put_url = await seaweed_store.presign("s/uploaded.jpg", expires_in=60, method="PUT")
    assert _http(put_url.url, "PUT", b"from a phone")[0] == 200
    assert await seaweed_store.get("s/uploaded.jpg") == b"from a phone"
    assert _http(get_url.url.split("?")[0])[0] == 403  # no signature at all


async def test_tampered_and_reused_urls_are_refused_by_the_server(
    seaweed_store: ObstoreImageStore,
) -> None:
    await seaweed_store.put("s/a.jpg", b"a", content_type="image/jpeg")
    url = (await seaweed_store.presign("s/a.jpg", expires_in=60)).url
    signature = parse_qs(urlsplit(url).query)["X-Amz-Signature"][0]
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    assert _http(url.replace(signature, flipped))[0] == 403
    assert _http(url.replace("s/a.jpg", "s/b.jpg"))[0] == 403
    assert _http(url.replace("X-Amz-Expires=60", "X-Amz-Expires=600"))[0] == 403
    assert _http(url, "PUT", b"overwrite")[0] == 403  # a GET URL is not a PUT URL
    assert await seaweed_store.get("s/a.jpg") == b"a"


async def test_urls_signed_with_rotated_credentials_work(
    seaweedfs_server: SeaweedFSServer, bucket: str
) -> None:
    calls: list[datetime] = []

    def provider() -> TemporaryCredentials:
        calls.append(datetime.now(UTC))
        return TemporaryCredentials(
            access_key_id=seaweedfs_server.access_key,
            secret_access_key=seaweedfs_server.secret_key,
            session_token=None,
            expires_at=datetime.now(UTC) + timedelta(hours=1),
        )

    store = ObstoreImageStore(
        bucket,
        config=seaweedfs_server.s3_config(
            access_key_id=None, secret_access_key=None, credentials_provider=provider
        ),
    )
    await store.put("s/rotated.jpg", b"rotated", content_type="image/jpeg")
    url = await store.presign("s/rotated.jpg", expires_in=60)
    assert _http(url.url) == (200, b"rotated")
    assert calls
    await store.aclose()


async def test_credentials_come_from_boto3s_chain_by_default(
    seaweedfs_server: SeaweedFSServer, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs_server.secret_key.reveal())
    store = ObstoreImageStore(
        bucket, config=seaweedfs_server.s3_config(access_key_id=None, secret_access_key=None)
    )
    await store.put("s/env.jpg", b"env", content_type="image/jpeg")
    assert await store.get("s/env.jpg") == b"env"
    await store.aclose()


async def test_refusals_and_an_unreachable_endpoint_are_told_apart(
    seaweedfs_server: SeaweedFSServer, bucket: str
) -> None:
    readonly = ObstoreImageStore(
        bucket,
        config=seaweedfs_server.s3_config(
            access_key_id=seaweedfs_server.readonly_access_key,
            secret_access_key=seaweedfs_server.readonly_secret_key,
        ),
    )
    with pytest.raises(ConfigurationError) as caught:
        await readonly.put("s/a.jpg", b"a", content_type="image/jpeg")
    message = str(caught.value)
    assert "'s/a.jpg'" in message and bucket in message and "AccessDenied" in message
    wrong = ObstoreImageStore(
        bucket, config=seaweedfs_server.s3_config(secret_access_key=Secret("not-it"))
    )
    with pytest.raises(ConfigurationError, match="SignatureDoesNotMatch"):
        await wrong.get("s/a.jpg")
    with pytest.raises(ConfigurationError, match="403"):
        await wrong.head("s/a.jpg")
    nowhere = ObstoreImageStore(
        bucket,
        config=seaweedfs_server.s3_config(endpoint_url="http://127.0.0.1:9", connect_timeout=0.5),
    )
    with pytest.raises(StorageUnavailable, match="cannot reach S3"):
        await nowhere.head("s/a.jpg")


async def test_server_ordered_listings_of_a_partial_prefix_skip_ahead(
    seaweedfs_server: SeaweedFSServer, bucket: str
) -> None:
    store = ObstoreImageStore(bucket, config=seaweedfs_server.s3_config(listing_order="server"))
    keys = ["s1/a.jpg", "s1/b.jpg", "s1/ba.jpg", "s1/c.jpg", "s2/b.jpg"]
    await asyncio.gather(*(store.put(k, b"x", content_type="image/jpeg") for k in keys))
    assert [info.key async for info in store.list("s1/b")] == ["s1/b.jpg", "s1/ba.jpg"]
    assert [info.key async for info in store.list("s1/")] == keys[:4]
    assert [info.key async for info in store.list("s1/0")] == []
    assert [info.key async for info in store.list("s2")] == ["s2/b.jpg"]


async def test_listings_skip_keys_no_method_could_address(
    seaweed_store: ObstoreImageStore, boto3_store: S3ImageStore
) -> None:
    await seaweed_store.put("s/a.jpg", b"a", content_type="image/jpeg")
    boto3_store.client.put_object(Bucket=seaweed_store.name, Key="s/.hidden.jpg", Body=b"h")
    assert [info.key async for info in seaweed_store.list()] == ["s/a.jpg"]


async def test_lifecycle_goes_to_the_bucket_configuration(
    seaweed_store: ObstoreImageStore, boto3_store: S3ImageStore
) -> None:
    policy = LifecyclePolicy(rules=[LifecycleRule(id="tmp", prefix="tmp/", expire_after_days=7)])
    await seaweed_store.apply_lifecycle(policy)
    assert await seaweed_store.get_lifecycle() == await boto3_store.get_lifecycle()
    assert [rule.id for rule in (await seaweed_store.get_lifecycle()).rules] == ["tmp"]
    assert await seaweed_store.sweep() == []


async def test_a_given_obstore_store_is_used_as_it_is(
    seaweedfs_server: SeaweedFSServer, bucket: str
) -> None:
    given = S3Store(
        bucket,
        endpoint=seaweedfs_server.endpoint_url,
        region="us-east-1",
        access_key_id=seaweedfs_server.access_key,
        secret_access_key=seaweedfs_server.secret_key.reveal(),
        client_options={"allow_http": True},
        retry_config={"max_retries": 0},
    )
    store = ObstoreImageStore(bucket, config=seaweedfs_server.s3_config(), store=given)
    assert store.store is given
    await store.put("s/given.jpg", b"given", content_type="image/jpeg")
    url = await store.presign("s/given.jpg", expires_in=60)
    assert _http(url.url) == (200, b"given")
    await store.aclose()
