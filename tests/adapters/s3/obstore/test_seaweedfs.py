"""The obstore store on a real SeaweedFS server with authentication on: objects shared with
the boto3 store, multipart, checksums, URLs, credentials, listings, lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "obstore", reason="obstore is not installed (pip install 'demeter-storage[fast]')"
)
from obstore.store import S3Store

from demeter_storage import (
    ConfigurationError,
    ObjectExists,
    Secret,
    StorageUnavailable,
)
from demeter_storage.adapters.resilience.store import ResilientImageStore
from demeter_storage.adapters.s3.config import MiB, TemporaryCredentials
from demeter_storage.adapters.s3.obstore.store import ObstoreImageStore
from demeter_storage.adapters.s3.store import SHA256_METADATA, S3ImageStore
from demeter_storage.domain.lifecycle import LifecyclePolicy, LifecycleRule
from demeter_storage.testing import SeaweedFSServer, no_sleep
from demeter_storage.testing.contract import pattern_sha256, pattern_source

MULTIPART = {"multipart_threshold": 5 * MiB, "part_size": 5 * MiB, "multipart_concurrency": 2}


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


async def test_create_only_puts_of_one_request_are_obstores_own(
    seaweed_store: ObstoreImageStore,
) -> None:
    data = b"x" * 1000
    info = await seaweed_store.put("s/once.jpg", data, content_type="image/jpeg", if_absent=True)
    with pytest.raises(ObjectExists):
        await seaweed_store.put("s/once.jpg", b"other", content_type="image/png", if_absent=True)
    assert seaweed_store.companion._store is None  # no boto3 request was needed
    head = await seaweed_store.head("s/once.jpg")
    assert head.sha256 == info.sha256 == hashlib.sha256(data).hexdigest()
    assert (head.content_type, await seaweed_store.get("s/once.jpg")) == ("image/jpeg", data)


@pytest.mark.parametrize("source", ["bytes", "stream", "file"])
async def test_create_only_puts_larger_than_one_request_complete_only_if_absent(
    seaweed_store: ObstoreImageStore, source: str, tmp_path: Path
) -> None:
    size = 12 * MiB
    data = b"".join([chunk async for chunk in pattern_source(size)])
    (tmp_path / "big.tif").write_bytes(data)
    with contextlib.ExitStack() as files:

        def each_time() -> object:
            if source == "bytes":
                return data
            if source == "stream":
                return pattern_source(size)
            return files.enter_context((tmp_path / "big.tif").open("rb"))

        info = await seaweed_store.put(
            "s/big.tif", each_time(), content_type="image/tiff", if_absent=True
        )
        assert info.sha256 == pattern_sha256(size)
        with pytest.raises(ObjectExists):
            await seaweed_store.put(
                "s/big.tif", each_time(), content_type="image/tiff", if_absent=True
            )
    with pytest.raises(ObjectExists):
        await seaweed_store.put("s/big.tif", b"small", content_type="image/tiff", if_absent=True)
    assert (await seaweed_store.head("s/big.tif")).sha256 == pattern_sha256(size)
    assert await seaweed_store.get("s/big.tif") == data
    uploads = seaweed_store.companion.store.client.list_multipart_uploads(Bucket=seaweed_store.name)
    assert uploads.get("Uploads", []) == []


class _LosesItsFirstAnswer(ObstoreImageStore):
    """The first put reaches the server; its answer is lost (a dropped connection)."""

    lost = False

    async def _send(self, *args: Any, **kwargs: Any) -> str | None:
        etag = await super()._send(*args, **kwargs)
        if not self.lost:
            self.lost = True
            raise StorageUnavailable("the answer was lost")
        return etag


async def test_a_retried_create_only_put_finds_its_own_sha256(
    seaweedfs_server: SeaweedFSServer, bucket: str
) -> None:
    inner = _LosesItsFirstAnswer(bucket, config=seaweedfs_server.s3_config(**MULTIPART))
    store = ResilientImageStore(inner, sleep=no_sleep, circuit_name=uuid.uuid4().hex)
    data = b"field photo" * 100
    with pytest.raises(ObjectExists):
        await store.put("s/retried.jpg", data, content_type="image/jpeg", if_absent=True)
    assert inner.lost
    assert (await store.head("s/retried.jpg")).sha256 == hashlib.sha256(data).hexdigest()
    await store.aclose()


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
