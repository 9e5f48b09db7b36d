"""Behaviour of the S3 store beyond the contract: multipart, URLs, credentials, buckets."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from moto import mock_aws

from demeter_storage import (
    ConfigurationError,
    ObjectNotFound,
    Secret,
    StorageError,
    StorageUnavailable,
)
from demeter_storage.adapters.s3.config import MiB, S3Config, TemporaryCredentials
from demeter_storage.adapters.s3.store import SHA256_METADATA, S3ImageStore, validate_bucket_name
from demeter_storage.testing import SeaweedFSServer
from demeter_storage.testing.contract import pattern_sha256, pattern_source
from tests.adapters.s3.fake_s3 import FakeS3Server, fake_config
from tests.adapters.s3.faults import FAULTS, Requests, _Raw, error_response

MULTIPART = {"multipart_threshold": 5 * MiB, "part_size": 5 * MiB, "multipart_concurrency": 2}


@pytest.fixture
def moto() -> Iterator[None]:
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="photos")
        yield


@pytest.fixture
async def store(moto: None) -> AsyncIterator[S3ImageStore]:
    store = S3ImageStore("photos", config=S3Config(region="us-east-1", **MULTIPART))
    yield store
    await store.aclose()


def _dangling_uploads(store: S3ImageStore) -> list[str]:
    return [
        u["Key"] for u in store.client.list_multipart_uploads(Bucket="photos").get("Uploads", [])
    ]


async def test_multipart_objects_keep_type_metadata_and_sha256(store: S3ImageStore) -> None:
    size = 12 * MiB
    info = await store.put(
        "s/big.tif", pattern_source(size), content_type="image/tiff", metadata={"row": "7"}
    )
    head = await store.head("s/big.tif")
    assert head.sha256 == info.sha256 == pattern_sha256(size)
    assert (head.size, head.content_type, dict(head.metadata)) == (size, "image/tiff", {"row": "7"})
    assert _dangling_uploads(store) == []


async def test_files_are_uploaded_through_a_few_reused_buffers(
    store: S3ImageStore, tmp_path: Path
) -> None:
    size = 23 * MiB  # 4 full parts of 5 MiB and a short last one
    data = os.urandom(size)
    (tmp_path / "big.tif").write_bytes(data)
    bodies: list[object] = []  # kept alive, so that no two parts can share an id()
    upload_part = store.client.upload_part

    def spy(**kwargs: object) -> object:
        bodies.append(kwargs["Body"])
        return upload_part(**kwargs)  # type: ignore[arg-type]

    store.client.upload_part = spy  # type: ignore[method-assign]
    with (tmp_path / "big.tif").open("rb") as file:
        info = await store.put("s/big.tif", file, content_type="image/tiff")
    assert len(bodies) == 5
    # Two parts in flight at most: two buffers (and the short last part's copy).
    assert len({id(body) for body in bodies[:4]}) <= MULTIPART["multipart_concurrency"]
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert await store.get("s/big.tif") == data
    assert _dangling_uploads(store) == []


async def test_small_files_take_one_put(store: S3ImageStore, tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"jpeg bytes")
    requests = Requests(store.client)
    with (tmp_path / "a.jpg").open("rb") as file:
        await store.put("s/a.jpg", file, content_type="image/jpeg")
    assert requests.sent["PutObject"] == 1
    assert requests.sent["CreateMultipartUpload"] == 0
    assert await store.get("s/a.jpg") == b"jpeg bytes"


async def test_a_failed_part_aborts_the_upload_and_leaves_nothing(store: S3ImageStore) -> None:
    requests = Requests(store.client)
    requests.fail("UploadPart", FAULTS["500"])
    with pytest.raises(StorageUnavailable, match="UploadPart"):
        await store.put("s/big.tif", pattern_source(12 * MiB), content_type="image/tiff")
    requests.heal()
    assert requests.sent["AbortMultipartUpload"] == 1
    assert _dangling_uploads(store) == []
    assert not await store.exists("s/big.tif")


async def test_a_cancelled_multipart_put_is_aborted(store: S3ImageStore) -> None:
    requests = Requests(store.client)
    parts_sent = asyncio.Event()
    loop = asyncio.get_running_loop()

    def watch(event_name: str, **kwargs: object) -> None:
        if event_name.endswith("UploadPart"):
            loop.call_soon_threadsafe(parts_sent.set)

    store.client.meta.events.register("before-send.s3", watch)

    async def endless() -> AsyncIterator[bytes]:
        async for chunk in pattern_source(11 * MiB):
            yield chunk
        await asyncio.Event().wait()  # the client stalls forever
        yield b""  # pragma: no cover

    task = asyncio.create_task(store.put("s/stalled.tif", endless(), content_type="image/tiff"))
    await asyncio.wait_for(parts_sent.wait(), 10)
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert requests.sent["AbortMultipartUpload"] == 1
    assert _dangling_uploads(store) == []
    assert not await store.exists("s/stalled.tif")


def _answers_without(store: S3ImageStore, operation: str, field: str) -> None:
    """Make the client see ``operation``'s answers without ``field`` (as some servers send them)."""

    def strip(parsed: dict[str, object], **_: object) -> None:
        parsed.pop(field, None)

    store.client.meta.events.register(f"after-call.s3.{operation}", strip)


async def test_parts_without_a_checksum_in_the_answer_are_completed_by_etag(
    store: S3ImageStore,
) -> None:
    _answers_without(store, "UploadPart", "ChecksumCRC32")
    info = await store.put("s/big.tif", pattern_source(12 * MiB), content_type="image/tiff")
    assert info.size == 12 * MiB
    assert info.sha256 == pattern_sha256(12 * MiB)
    assert hashlib.sha256(await store.get("s/big.tif")).hexdigest() == info.sha256


async def test_a_part_answered_without_an_etag_fails_the_put_and_is_aborted(
    store: S3ImageStore,
) -> None:
    requests = Requests(store.client)
    _answers_without(store, "UploadPart", "ETag")
    with pytest.raises(StorageError, match=r"UploadPart of 's/big\.tif'.*no ETag") as caught:
        await store.put("s/big.tif", pattern_source(12 * MiB), content_type="image/tiff")
    assert type(caught.value) is StorageError  # a server's fault no retry mends
    assert requests.sent["AbortMultipartUpload"] == 1
    assert _dangling_uploads(store) == []
    assert not await store.exists("s/big.tif")


async def test_an_upload_answered_without_an_id_sends_no_part(store: S3ImageStore) -> None:
    requests = Requests(store.client)
    _answers_without(store, "CreateMultipartUpload", "UploadId")
    with pytest.raises(StorageError, match=r"CreateMultipartUpload of 's/big\.tif'.*no UploadId"):
        await store.put("s/big.tif", pattern_source(12 * MiB), content_type="image/tiff")
    assert requests.sent["UploadPart"] == 0
    assert not await store.exists("s/big.tif")


async def test_a_failed_sha256_record_keeps_the_object(
    store: S3ImageStore, caplog: pytest.LogCaptureFixture
) -> None:
    Requests(store.client).fail("CopyObject", FAULTS["SlowDown"])
    with caplog.at_level(logging.WARNING):
        info = await store.put("s/big.tif", pattern_source(6 * MiB), content_type="image/tiff")
    assert info.sha256 == pattern_sha256(6 * MiB)
    assert (await store.head("s/big.tif")).sha256 is None
    assert "could not record the SHA-256" in caplog.text


async def test_small_puts_send_their_sha256_for_the_server_to_check(store: S3ImageStore) -> None:
    requests = Requests(store.client)
    await store.put("s/a.jpg", b"photo", content_type="image/jpeg")
    assert requests.sent == {"PutObject": 1}
    raw = store.client.head_object(Bucket="photos", Key="s/a.jpg")
    assert raw["Metadata"][SHA256_METADATA] == (await store.head("s/a.jpg")).sha256
    assert SHA256_METADATA not in (await store.head("s/a.jpg")).metadata


async def test_delete_many_batches_by_a_thousand_and_lists_every_page(store: S3ImageStore) -> None:
    keys = [f"s/{index:04d}.jpg" for index in range(1005)]
    await asyncio.gather(*(store.put(k, b"x", content_type="image/jpeg") for k in keys))
    requests = Requests(store.client)
    assert [info.key async for info in store.list("s/")] == keys
    assert requests.sent["ListObjectsV2"] == 2
    await store.delete_many(keys)
    assert requests.sent["DeleteObjects"] == 2
    assert [info async for info in store.list()] == []


async def test_objects_a_delete_left_behind_are_reported(store: S3ImageStore) -> None:
    body = (
        "<?xml version='1.0' encoding='UTF-8'?><DeleteResult><Error><Key>s/a.jpg</Key>"
        "<Code>AccessDenied</Code><Message>no</Message></Error></DeleteResult>"
    )
    Requests(store.client).fail(
        "DeleteObjects",
        lambda request: AWSResponse("https://x", 200, {}, _Raw(body.encode())),
    )
    with pytest.raises(StorageError, match=r"left 1 object.*'s/a.jpg': AccessDenied"):
        await store.delete_many(["s/a.jpg", "s/b.jpg"])


async def test_a_closed_store_says_so(moto: None) -> None:
    store = S3ImageStore("photos", config=S3Config(region="us-east-1"))
    await store.aclose()
    with pytest.raises(StorageError, match="closed"):
        await store.get("s/a.jpg")


def test_the_client_is_sized_for_the_threads_and_never_retries(moto: None) -> None:
    store = S3ImageStore("photos", config=S3Config(region="us-east-1", max_concurrency=24))
    config = store.client.meta.config
    assert config.max_pool_connections == 24
    assert store._threads._max_workers == 24
    assert config.retries == {"total_max_attempts": 1, "mode": "standard"}
    assert (config.connect_timeout, config.read_timeout) == (5.0, 60.0)


async def test_the_timeouts_are_the_clients_and_a_stalled_server_times_out(
    fake_s3: FakeS3Server,
) -> None:
    store = S3ImageStore(
        "photos", config=fake_config(fake_s3, connect_timeout=1.5, read_timeout=0.5)
    )
    config = store.client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (1.5, 0.5)
    fake_s3.script.append(("stall",))  # answers nothing for 30 s
    started = time.monotonic()
    try:
        with pytest.raises(StorageUnavailable, match=r"HeadObject of 's/a\.jpg'.*Read timeout"):
            await store.head("s/a.jpg")
    finally:
        await store.aclose()
    # Far below the 30 s stall and the 60 s default: the setting is what ended the wait.
    assert time.monotonic() - started < 10


def _answer_head(sent: list[str]) -> Callable[..., AWSResponse]:
    def answer(request: Any, **_: Any) -> AWSResponse:
        sent.append(request.url)
        headers = {
            "Content-Length": "5",
            "ETag": '"etag-1"',
            "Last-Modified": "Thu, 01 Jan 2026 00:00:00 GMT",
            "Content-Type": "image/jpeg",
        }
        return AWSResponse(request.url, 200, headers, _Raw(b""))

    return answer


@pytest.mark.parametrize(
    ("style", "object_url"),
    [
        ("virtual", "https://photos.s3.example.test/s/a.jpg"),
        ("path", "https://s3.example.test/photos/s/a.jpg"),
    ],
)
async def test_the_addressing_style_shapes_requests_and_presigned_urls(
    style: str, object_url: str
) -> None:
    config = S3Config(
        endpoint_url="https://s3.example.test",
        region="eu-west-1",
        addressing_style=style,  # type: ignore[arg-type]  # the literal, parametrized
        access_key_id="AKIDEXAMPLE",
        secret_access_key=Secret("secret"),
    )
    store = S3ImageStore("photos", config=config)
    sent: list[str] = []
    store.client.meta.events.register_first("before-send.s3", _answer_head(sent))
    try:
        info = await store.head("s/a.jpg")
        url = await store.presign("s/a.jpg", expires_in=60)
    finally:
        await store.aclose()
    assert info.size == 5
    assert sent == [object_url]
    assert url.url.startswith(object_url + "?X-Amz-Algorithm=AWS4-HMAC-SHA256&")


def test_a_given_client_with_a_small_pool_is_warned_about(
    moto: None, caplog: pytest.LogCaptureFixture
) -> None:
    client = boto3.client("s3", region_name="us-east-1", config=Config(max_pool_connections=4))
    with caplog.at_level(logging.WARNING):
        store = S3ImageStore("photos", client=client)
    assert store.client is client
    assert "max_pool_connections=16" in caplog.text


@pytest.mark.parametrize("name", ["ab", "Upper", "a_b", "-ab", "ab-", "a..b", "x" * 64])
def test_invalid_bucket_names_are_configuration_errors(name: str) -> None:
    with pytest.raises(ConfigurationError, match="bucket name"):
        validate_bucket_name(name)
    with pytest.raises(TypeError):
        validate_bucket_name(None)


@pytest.mark.parametrize(
    "settings",
    [
        {"part_size": MiB},
        {"multipart_threshold": 6 * 1024 * MiB},
        {"max_concurrency": 0},
        {"access_key_id": "only-the-id"},
        {"addressing_style": "sideways"},
        {"listing_order": "random"},
    ],
)
def test_inconsistent_settings_are_configuration_errors(settings: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        S3Config(**settings)  # type: ignore[arg-type]


def test_an_unknown_profile_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="profile"):
        S3ImageStore("photos", config=S3Config(profile=f"missing-{uuid.uuid4().hex}"))


def test_secrets_never_show_in_reprs() -> None:
    config = S3Config(
        access_key_id="AKIDEXAMPLE",
        secret_access_key=Secret("wJalrXUtnFEMI/SECRET"),
        session_token=Secret("FwoGZXIvYXdzTOKEN"),
        region="eu-west-1",
    )
    with mock_aws():
        store = S3ImageStore("photos", config=config)
    for text in (repr(config), str(config), repr(store)):
        assert "wJalrXUtnFEMI" not in text
        assert "FwoGZXIvYXdz" not in text


async def test_presigned_urls_carry_a_session_token(moto: None) -> None:
    config = S3Config(
        region="us-east-1",
        access_key_id="ASIAEXAMPLE",
        secret_access_key=Secret("secret"),
        session_token=Secret("the-session-token"),
    )
    store = S3ImageStore("photos", config=config)
    url = await store.presign("s/a.jpg", expires_in=900)
    query = parse_qs(urlsplit(url.url).query)
    assert query["X-Amz-Security-Token"] == ["the-session-token"]
    assert query["X-Amz-Expires"] == ["900"]
    assert query["X-Amz-Credential"][0].startswith("ASIAEXAMPLE/")
    await store.aclose()


# On a real server with authentication on


def _http(
    url: str,
    method: str = "GET",
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture
async def seaweed_store(seaweedfs_server: SeaweedFSServer) -> AsyncIterator[S3ImageStore]:
    store = S3ImageStore(f"urls-{uuid.uuid4().hex[:12]}", config=seaweedfs_server.s3_config())
    await store.ensure_bucket()
    yield store
    await store.aclose()


async def test_expired_urls_are_refused_by_the_server(seaweed_store: S3ImageStore) -> None:
    await seaweed_store.put("s/a.jpg", b"a", content_type="image/jpeg")
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    past = S3ImageStore(
        seaweed_store.name,
        client=seaweed_store.client,
        config=seaweed_store.config,
        clock=lambda: an_hour_ago,
    )
    url = (await past.presign("s/a.jpg", expires_in=60)).url
    await past.aclose()
    assert _http(url)[0] == 403


async def test_stable_urls_are_accepted_by_the_server(
    seaweedfs_server: SeaweedFSServer, seaweed_store: S3ImageStore
) -> None:
    await seaweed_store.put("s/a.jpg", b"a", content_type="image/jpeg")
    stable = S3ImageStore(
        seaweed_store.name,
        config=seaweedfs_server.s3_config(presign_stable_seconds=3600),
    )
    first = await stable.presign("s/a.jpg", expires_in=60)
    assert first == await stable.presign("s/a.jpg", expires_in=60)
    await stable.aclose()
    assert _http(first.url) == (200, b"a")


async def test_readonly_credentials_give_clear_configuration_errors(
    seaweedfs_server: SeaweedFSServer, seaweed_store: S3ImageStore
) -> None:
    readonly = S3ImageStore(
        seaweed_store.name,
        config=seaweedfs_server.s3_config(
            access_key_id=seaweedfs_server.readonly_access_key,
            secret_access_key=seaweedfs_server.readonly_secret_key,
        ),
    )
    with pytest.raises(ConfigurationError) as caught:
        await readonly.put("s/a.jpg", b"a", content_type="image/jpeg")
    message = str(caught.value)
    assert "'s/a.jpg'" in message and seaweed_store.name in message and "AccessDenied" in message
    missing = S3ImageStore(
        f"never-{uuid.uuid4().hex[:12]}",
        config=seaweedfs_server.s3_config(
            access_key_id=seaweedfs_server.readonly_access_key,
            secret_access_key=seaweedfs_server.readonly_secret_key,
        ),
    )
    with pytest.raises(ConfigurationError, match="may not create it"):
        await missing.ensure_bucket()
    await readonly.aclose()
    await missing.aclose()


async def test_ensure_bucket_is_idempotent(seaweedfs_server: SeaweedFSServer) -> None:
    store = S3ImageStore(f"new-{uuid.uuid4().hex[:12]}", config=seaweedfs_server.s3_config())
    assert await store.ensure_bucket() is True
    assert await store.ensure_bucket() is False
    await store.aclose()


async def test_wrong_secret_and_unreachable_endpoint_are_told_apart(
    seaweedfs_server: SeaweedFSServer,
) -> None:
    wrong = S3ImageStore(
        "anything", config=seaweedfs_server.s3_config(secret_access_key=Secret("not-it"))
    )
    with pytest.raises(ConfigurationError, match="SignatureDoesNotMatch"):
        await wrong.get("s/a.jpg")
    with pytest.raises(ConfigurationError, match="403"):
        await wrong.head("s/a.jpg")  # HEAD answers carry no error code
    nowhere = S3ImageStore(
        "anything",
        config=seaweedfs_server.s3_config(endpoint_url="http://127.0.0.1:9", connect_timeout=0.5),
    )
    with pytest.raises(StorageUnavailable, match="cannot reach S3"):
        await nowhere.head("s/a.jpg")
    await wrong.aclose()
    await nowhere.aclose()


async def test_credentials_come_from_the_environment_by_default(
    seaweedfs_server: SeaweedFSServer,
    seaweed_store: S3ImageStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs_server.secret_key.reveal())
    store = S3ImageStore(
        seaweed_store.name,
        config=seaweedfs_server.s3_config(access_key_id=None, secret_access_key=None),
    )
    await store.put("s/env.jpg", b"env", content_type="image/jpeg")
    await store.aclose()


async def test_credentials_come_from_a_named_profile(
    seaweedfs_server: SeaweedFSServer,
    seaweed_store: S3ImageStore,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text(
        f"[field-app]\naws_access_key_id = {seaweedfs_server.access_key}\n"
        f"aws_secret_access_key = {seaweedfs_server.secret_key.reveal()}\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    store = S3ImageStore(
        seaweed_store.name,
        config=seaweedfs_server.s3_config(
            access_key_id=None, secret_access_key=None, profile="field-app"
        ),
    )
    await store.put("s/profile.jpg", b"profile", content_type="image/jpeg")
    await store.aclose()


async def test_rotated_credentials_are_fetched_again_before_they_expire(
    seaweedfs_server: SeaweedFSServer, seaweed_store: S3ImageStore
) -> None:
    calls: list[datetime] = []

    def provider() -> TemporaryCredentials:
        calls.append(datetime.now(UTC))
        return TemporaryCredentials(
            access_key_id=seaweedfs_server.access_key,
            secret_access_key=seaweedfs_server.secret_key,
            session_token=None,
            # Inside botocore's mandatory refresh window: every request refreshes.
            expires_at=datetime.now(UTC) + timedelta(minutes=5),
        )

    store = S3ImageStore(
        seaweed_store.name,
        config=seaweedfs_server.s3_config(
            access_key_id=None, secret_access_key=None, credentials_provider=provider
        ),
    )
    await store.put("s/rotated.jpg", b"1", content_type="image/jpeg")
    await store.put("s/rotated.jpg", b"2", content_type="image/jpeg")
    assert await store.get("s/rotated.jpg") == b"2"
    assert len(calls) >= 3
    assert "<callable>" in repr(store.config)
    await store.aclose()


async def test_error_messages_name_the_operation_bucket_key_and_code(
    store: S3ImageStore,
) -> None:
    Requests(store.client).fail("HeadObject", lambda request: error_response(400, "InvalidRequest"))
    with pytest.raises(StorageError) as caught:
        await store.head("s/a.jpg")
    assert str(caught.value).startswith("S3 HeadObject of 's/a.jpg' in bucket 'photos' failed")
    assert "InvalidRequest" in str(caught.value)


@pytest.mark.parametrize(
    ("operation", "code"),
    [("get", "(NoSuchKey)"), ("head", "(404)")],  # an answer to HEAD has no body, only its status
)
async def test_a_missing_object_names_its_key_bucket_and_code(
    store: S3ImageStore, operation: str, code: str
) -> None:
    with pytest.raises(ObjectNotFound) as caught:
        await getattr(store, operation)("s/missing.jpg")
    assert (caught.value.key, caught.value.bucket) == ("s/missing.jpg", "photos")
    message = str(caught.value)
    assert message.startswith("object 's/missing.jpg' not found in 'photos'")
    assert code in message


@pytest.mark.seaweedfs
def test_the_test_server_has_room_for_a_bucket_per_test(
    seaweedfs_server: SeaweedFSServer,
) -> None:
    # Each bucket takes volumes of its own; CI once ran out mid-suite with
    # SeaweedFS's default limit, which depends on the free disk space.
    status_url = f"http://127.0.0.1:{seaweedfs_server.ports['master']}/dir/status"
    with urllib.request.urlopen(status_url, timeout=5) as response:
        topology = json.load(response)["Topology"]
    assert topology["Max"] >= 1000
