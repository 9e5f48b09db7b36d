"""``stream`` on both S3 adapters: parts fetched in parallel, never two versions mixed."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from demeter_storage import ObjectNotFound, StorageError
from demeter_storage.adapters.s3.config import MiB, S3Config
from demeter_storage.adapters.s3.store import S3ImageStore
from demeter_storage.ports import ImageStore
from demeter_storage.testing import SeaweedFSServer
from demeter_storage.testing.contract import pattern_sha256, pattern_source
from tests.adapters.s3.fake_s3 import FakeS3Server, fake_config
from tests.adapters.s3.faults import Requests, error_response

try:
    from demeter_storage.adapters.s3.obstore.store import ObstoreImageStore
except ImportError:  # the `fast` extra is not installed
    ObstoreImageStore = None  # type: ignore[assignment,misc]

needs_obstore = pytest.mark.skipif(
    ObstoreImageStore is None,
    reason="obstore is not installed (pip install 'demeter-storage[fast]')",
)

PARTS = {"part_size": 5 * MiB, "multipart_threshold": 5 * MiB}


def _ranges(fake: FakeS3Server) -> list[tuple[str | None, str | None]]:
    return [(headers.get("range"), headers.get("if-match")) for headers in fake.headers]


async def _read(store: ImageStore, key: str, chunk_size: int) -> bytes:
    chunks = [chunk async for chunk in store.stream(key, chunk_size=chunk_size)]
    assert all(isinstance(chunk, bytes) and 0 < len(chunk) <= chunk_size for chunk in chunks)
    return b"".join(chunks)


# obstore, against a scripted server


@needs_obstore
async def test_a_large_object_is_read_in_parallel_parts_tied_to_one_etag(
    fake_s3: FakeS3Server,
) -> None:
    fake_s3.body = bytes(range(256)) * (11 * MiB // 256 + 3)  # 11 MiB and 768 bytes
    store = ObstoreImageStore("photos", config=fake_config(fake_s3, **PARTS))
    assert await _read(store, "s/big.tif", chunk_size=MiB) == fake_s3.body
    part, size = 5 * MiB, len(fake_s3.body)
    assert _ranges(fake_s3)[0] == (f"bytes=0-{part - 1}", None)
    assert set(_ranges(fake_s3)[1:]) == {
        (f"bytes={part}-{2 * part - 1}", '"etag-1"'),
        (f"bytes={2 * part}-{size - 1}", '"etag-1"'),
    }
    assert len(fake_s3.requests) == 3


@needs_obstore
async def test_an_object_of_one_part_takes_one_request(fake_s3: FakeS3Server) -> None:
    fake_s3.body = b"a small photo" * 1000
    store = ObstoreImageStore("photos", config=fake_config(fake_s3, **PARTS))
    assert await _read(store, "s/small.jpg", chunk_size=4096) == fake_s3.body
    assert _ranges(fake_s3) == [(f"bytes=0-{5 * MiB - 1}", None)]


@needs_obstore
async def test_an_empty_object_is_read_without_a_range(fake_s3: FakeS3Server) -> None:
    fake_s3.body = b""
    fake_s3.script = [("error", 416, "InvalidRange")]  # no range fits in nothing
    store = ObstoreImageStore("photos", config=fake_config(fake_s3, **PARTS))
    assert await _read(store, "s/empty.bin", chunk_size=4096) == b""
    assert [asked for asked, _ in _ranges(fake_s3)] == [f"bytes=0-{5 * MiB - 1}", None]


@needs_obstore
async def test_a_server_ignoring_ranges_is_read_with_one_plain_get(
    fake_s3: FakeS3Server,
) -> None:
    fake_s3.body = bytes(range(256)) * (6 * MiB // 256)
    fake_s3.ignores_ranges = True
    store = ObstoreImageStore("photos", config=fake_config(fake_s3, **PARTS))
    assert await _read(store, "s/big.tif", chunk_size=MiB) == fake_s3.body
    assert [asked for asked, _ in _ranges(fake_s3)] == [f"bytes=0-{5 * MiB - 1}", None]


@needs_obstore
async def test_a_missing_object_is_not_found(fake_s3: FakeS3Server) -> None:
    fake_s3.script = [("error", 404, "NoSuchKey")]
    store = ObstoreImageStore("photos", config=fake_config(fake_s3, **PARTS))
    with pytest.raises(ObjectNotFound):
        await _read(store, "s/gone.jpg", chunk_size=MiB)
    assert len(fake_s3.requests) == 1


@needs_obstore
async def test_an_object_replaced_between_parts_is_an_error_not_a_mix(
    fake_s3: FakeS3Server,
) -> None:
    fake_s3.body = bytes(11 * MiB)
    fake_s3.script = [("ok",), ("error", 412, "PreconditionFailed")]
    store = ObstoreImageStore("photos", config=fake_config(fake_s3, **PARTS))
    with pytest.raises(StorageError, match="replaced while it was being read; read it again"):
        await _read(store, "s/big.tif", chunk_size=MiB)


@needs_obstore
async def test_a_reader_stopping_early_leaves_no_request_running(fake_s3: FakeS3Server) -> None:
    fake_s3.body = bytes(16 * MiB)
    store = ObstoreImageStore("photos", config=fake_config(fake_s3, **PARTS))
    stream = store.stream("s/big.tif", chunk_size=MiB)
    assert len(await anext(stream)) == MiB
    await stream.aclose()  # type: ignore[attr-defined]
    assert asyncio.all_tasks() == {asyncio.current_task()}


# boto3, on moto


@pytest.fixture
async def moto_store() -> AsyncIterator[S3ImageStore]:
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="photos")
        store = S3ImageStore("photos", config=S3Config(region="us-east-1", **PARTS))
        yield store
        await store.aclose()


def _ranges_sent(store: S3ImageStore) -> list[tuple[str | None, str | None]]:
    sent: list[tuple[str | None, str | None]] = []

    def header(request: Any, name: str) -> str | None:
        value = request.headers.get(name)
        return value.decode() if isinstance(value, bytes) else value

    def record(request: Any, **_: Any) -> None:
        sent.append((header(request, "Range"), header(request, "If-Match")))

    store.client.meta.events.register("before-send.s3.GetObject", record)
    return sent


@pytest.mark.parametrize("size", [0, 1, 5 * MiB, 5 * MiB + 1, 11 * MiB + 768])
async def test_the_boto3_store_reads_every_size_exactly(
    moto_store: S3ImageStore, size: int
) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    info = await moto_store.put("s/obj.bin", data, content_type="application/octet-stream")
    sent = _ranges_sent(moto_store)
    assert await _read(moto_store, "s/obj.bin", chunk_size=MiB) == data
    first, *others = sent
    assert first == (f"bytes=0-{5 * MiB - 1}", None)
    if size == 0:
        assert others == [(None, None)]  # no range fits in nothing: one plain GET
    else:
        parts = -(-size // (5 * MiB))
        assert len(others) == parts - 1
        assert all(if_match == info.etag for _, if_match in others)


async def test_the_boto3_store_reads_an_object_without_an_etag_in_one_get(
    moto_store: S3ImageStore,
) -> None:
    data = bytes(range(256)) * (11 * MiB // 256)
    await moto_store.put("s/big.tif", data, content_type="image/tiff")

    def drop_etag(parsed: dict[str, Any], **_: Any) -> None:
        parsed.pop("ETag", None)

    moto_store.client.meta.events.register("after-call.s3.GetObject", drop_etag)
    sent = _ranges_sent(moto_store)
    assert await _read(moto_store, "s/big.tif", chunk_size=MiB) == data
    # Nothing to tie parts to: the first answer is dropped for one GET of it all.
    assert sent == [(f"bytes=0-{5 * MiB - 1}", None), (f"bytes=0-{len(data) - 1}", None)]


async def test_the_boto3_store_fails_a_read_whose_object_was_replaced(
    moto_store: S3ImageStore,
) -> None:
    await moto_store.put("s/big.tif", bytes(11 * MiB), content_type="image/tiff")
    Requests(moto_store.client).fail(
        "GetObject",
        lambda request: (
            error_response(412, "PreconditionFailed") if request.headers.get("If-Match") else None
        ),
    )
    with pytest.raises(StorageError, match="replaced while it was being read; read it again"):
        await _read(moto_store, "s/big.tif", chunk_size=MiB)


async def test_the_boto3_store_leaves_no_request_running_when_a_reader_stops(
    moto_store: S3ImageStore,
) -> None:
    await moto_store.put("s/big.tif", bytes(16 * MiB), content_type="image/tiff")
    stream = moto_store.stream("s/big.tif", chunk_size=MiB)
    assert len(await anext(stream)) == MiB
    await stream.aclose()  # type: ignore[attr-defined]
    assert asyncio.all_tasks() == {asyncio.current_task()}


# Both adapters, on a real server

ADAPTERS: dict[str, Any] = {"boto3": S3ImageStore}
if ObstoreImageStore is not None:
    ADAPTERS["obstore"] = ObstoreImageStore


@pytest.fixture(params=sorted(ADAPTERS))
async def stores(
    request: pytest.FixtureRequest, seaweedfs_server: SeaweedFSServer
) -> AsyncIterator[tuple[ImageStore, S3ImageStore]]:
    bucket = f"ranged-{uuid.uuid4().hex[:12]}"
    writer = S3ImageStore(bucket, config=seaweedfs_server.s3_config(**PARTS))
    await writer.ensure_bucket()
    # One part at a time: the third part is asked for only once the second was read.
    config = seaweedfs_server.s3_config(**PARTS, multipart_concurrency=1)
    reader: ImageStore = ADAPTERS[request.param](bucket, config=config)
    yield reader, writer
    await reader.aclose()
    await writer.aclose()


async def test_parallel_parts_read_back_exactly_from_a_real_server(
    stores: tuple[ImageStore, S3ImageStore],
) -> None:
    reader, writer = stores
    size = 17 * MiB + 5
    await writer.put("s/big.tif", pattern_source(size), content_type="image/tiff")
    digest = hashlib.sha256()
    async for chunk in reader.stream("s/big.tif", chunk_size=3 * MiB):
        digest.update(chunk)
    assert digest.hexdigest() == pattern_sha256(size)
    await writer.put("s/empty.bin", b"", content_type="application/octet-stream")
    assert await _read(reader, "s/empty.bin", chunk_size=MiB) == b""


async def test_an_overwrite_during_a_read_fails_the_read_on_a_real_server(
    stores: tuple[ImageStore, S3ImageStore],
) -> None:
    reader, writer = stores
    await writer.put("s/big.tif", bytes(20 * MiB), content_type="image/tiff")
    stream = reader.stream("s/big.tif", chunk_size=5 * MiB)
    assert await anext(stream) == bytes(5 * MiB)
    await writer.put("s/big.tif", b"\xff" * (20 * MiB), content_type="image/tiff")
    seen: list[bytes] = []

    async def read_on() -> None:
        async for chunk in stream:
            seen.append(chunk)

    with pytest.raises(StorageError, match="replaced while it was being read"):
        await read_on()
    assert all(set(chunk) == {0} for chunk in seen)  # never a byte of the new version
