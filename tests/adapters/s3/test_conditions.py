"""The S3 store's conditional operations beyond the contract: copies, retries, translation."""

from __future__ import annotations

import hashlib
import itertools
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from unittest import mock

import boto3
import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from moto import mock_aws

from demeter_storage import ObjectChanged, ObjectExists, StorageError
from demeter_storage.adapters.resilience.store import ResilientImageStore
from demeter_storage.adapters.s3 import conditions as s3_conditions
from demeter_storage.adapters.s3.conditions import copy_ranges
from demeter_storage.adapters.s3.config import MAX_PART_SIZE, MAX_PARTS, MiB, S3Config
from demeter_storage.adapters.s3.errors import translate
from demeter_storage.adapters.s3.multipart import composite_etag
from demeter_storage.adapters.s3.store import SHA256_METADATA, S3ImageStore
from demeter_storage.testing import SeaweedFSServer, no_sleep

SMALL_PARTS = {"multipart_threshold": 5 * MiB, "part_size": 5 * MiB, "multipart_concurrency": 2}


def pattern_bytes(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture
def moto() -> Iterator[None]:
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="conditions")
        yield


@pytest.fixture
async def store(moto: None) -> AsyncIterator[S3ImageStore]:
    store = S3ImageStore("conditions", config=S3Config(region="us-east-1", **SMALL_PARTS))
    yield store
    await store.aclose()


@pytest.fixture
async def seaweed_store(seaweedfs_server: SeaweedFSServer) -> AsyncIterator[S3ImageStore]:
    store = S3ImageStore(
        f"cond-{uuid.uuid4().hex[:12]}", config=seaweedfs_server.s3_config(**SMALL_PARTS)
    )
    await store.ensure_bucket()
    yield store
    await store.aclose()


def _uploads(store: S3ImageStore) -> list[str]:
    listing = store.client.list_multipart_uploads(Bucket=store.name)
    return [upload["Key"] for upload in listing.get("Uploads", [])]


def _client_error(status: int, code: str, operation: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        operation,
    )


# Translation


@pytest.mark.parametrize("code", ["PreconditionFailed", "412", "ConditionalRequestConflict"])
def test_only_create_only_writes_and_conditional_deletes_lose_to_a_precondition(code: str) -> None:
    status = 409 if code == "ConditionalRequestConflict" else 412
    exc = _client_error(status, code, "x")
    for operation in ("PutObject", "CompleteMultipartUpload"):
        assert isinstance(translate(exc, operation=operation, bucket="b", key="k"), ObjectExists)
    assert isinstance(translate(exc, operation="DeleteObject", bucket="b", key="k"), ObjectChanged)
    # A copy's precondition pins its source: losing says nothing of the target.
    for operation in ("CopyObject", "UploadPartCopy", "GetObject"):
        error = translate(exc, operation=operation, bucket="b", key="k")
        assert type(error) is StorageError
        assert code in str(error) and "'b'" in str(error)


# Copies


async def test_a_refused_create_only_copy_leaves_no_upload_behind(store: S3ImageStore) -> None:
    await store.put("c/a.jpg", b"aaa", content_type="image/jpeg")
    await store.put("c/b.jpg", b"bbb", content_type="image/png")
    with pytest.raises(ObjectExists):
        await store.copy("c/a.jpg", "c/b.jpg", if_absent=True)
    assert await store.get("c/b.jpg") == b"bbb"
    assert _uploads(store) == []


async def test_a_create_only_copy_keeps_type_metadata_and_sha256(store: S3ImageStore) -> None:
    put = await store.put(
        "c/src.jpg", b"source", content_type="application/octet-stream", metadata={"row": "7"}
    )
    info = await store.copy("c/src.jpg", "c/dst.jpg", if_absent=True)
    head = await store.head("c/dst.jpg")
    assert (head.content_type, dict(head.metadata), head.sha256) == (
        "application/octet-stream",
        {"row": "7"},
        put.sha256,
    )
    assert (info.key, info.size, info.sha256, info.etag) == ("c/dst.jpg", 6, put.sha256, head.etag)


async def test_sources_over_one_part_copy_in_ranges(store: S3ImageStore) -> None:
    data = pattern_bytes(12 * MiB)
    await store.put("c/big.tif", data, content_type="image/tiff")
    sent: list[dict[str, Any]] = []
    store.client.meta.events.register(
        "provide-client-params.s3.UploadPartCopy", lambda params, **_: sent.append(dict(params))
    )
    with mock.patch.object(s3_conditions, "SINGLE_COPY_PART_LIMIT", 6 * MiB):
        info = await store.copy("c/big.tif", "c/big-copy.tif", if_absent=True)
    assert [p["CopySourceRange"] for p in sent] == [
        f"bytes=0-{5 * MiB - 1}",
        f"bytes={5 * MiB}-{10 * MiB - 1}",
        f"bytes={10 * MiB}-{12 * MiB - 1}",
    ]
    assert await store.get("c/big-copy.tif") == data
    assert info.etag is not None and info.etag.endswith('-3"')


def test_copy_ranges_cover_the_source_in_at_most_ten_thousand_parts() -> None:
    assert copy_ranges(0, 8 * MiB) == [None]
    assert copy_ranges(MAX_PART_SIZE, 8 * MiB) == [None]
    for size in (MAX_PART_SIZE + 1, 50 * 1024 * MiB, 5 * 1024 * 1024 * MiB):
        ranges = copy_ranges(size, 8 * MiB)
        assert len(ranges) <= MAX_PARTS
        assert ranges[0] is not None and ranges[0][0] == 0
        assert ranges[-1] is not None and ranges[-1][1] == size - 1
        for before, after in itertools.pairwise(ranges):
            assert before is not None and after is not None
            assert after[0] == before[1] + 1
            assert 5 * MiB <= before[1] - before[0] + 1 <= MAX_PART_SIZE


@pytest.mark.parametrize("if_absent", [False, True], ids=["copy", "create-only copy"])
async def test_a_source_replaced_mid_copy_is_copied_anew(
    seaweed_store: S3ImageStore, seaweedfs_server: SeaweedFSServer, if_absent: bool
) -> None:
    # SeaweedFS enforces x-amz-copy-source-if-match (moto ignores it).
    store = seaweed_store
    await store.put("c/src.jpg", b"version one", content_type="image/jpeg")
    other = seaweedfs_server.client()
    replaced: list[str] = []

    def replace_source_once(**_: Any) -> None:
        if not replaced:
            replaced.append("yes")
            other.put_object(Bucket=store.name, Key="c/src.jpg", Body=b"version two!")

    operation = "UploadPartCopy" if if_absent else "CopyObject"
    store.client.meta.events.register(f"before-send.s3.{operation}", replace_source_once)
    info = await store.copy("c/src.jpg", "c/dst.jpg", if_absent=if_absent)
    assert replaced == ["yes"]
    assert await store.get("c/dst.jpg") == b"version two!"
    assert info.size == len(b"version two!")
    assert _uploads(store) == []
    other.close()


async def test_a_source_that_keeps_changing_fails_the_copy(
    store: S3ImageStore,
) -> None:
    await store.put("c/src.jpg", b"one", content_type="image/jpeg")

    def precondition_failed(**_: Any) -> None:
        raise _client_error(412, "PreconditionFailed", "CopyObject")

    store.client.meta.events.register("before-call.s3.CopyObject", precondition_failed)
    with pytest.raises(StorageError, match="replaced while it was copied, 3 times") as caught:
        await store.copy("c/src.jpg", "c/dst.jpg")
    assert not isinstance(caught.value, ObjectExists)


# Conditional deletes


@pytest.fixture(params=["moto", "SeaweedFS"])
async def either_store(request: pytest.FixtureRequest) -> AsyncIterator[S3ImageStore]:
    if request.param == "moto":
        with mock_aws():
            boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="conditions")
            store = S3ImageStore("conditions", config=S3Config(region="us-east-1"))
            yield store
            await store.aclose()
        return
    server: SeaweedFSServer = request.getfixturevalue("seaweedfs_server")
    store = S3ImageStore(f"cond-{uuid.uuid4().hex[:12]}", config=server.s3_config())
    await store.ensure_bucket()
    yield store
    await store.aclose()


async def test_a_conditional_delete_of_a_missing_key_is_fine_on_either_server(
    either_store: S3ImageStore,
) -> None:
    # moto answers 404, SeaweedFS 412: both mean there is nothing to delete.
    store = either_store
    await store.delete("c/never.jpg", if_match='"0123456789abcdef0123456789abcdef"')
    await store.put("c/v.jpg", b"v1", content_type="image/jpeg")
    with pytest.raises(ObjectChanged):
        await store.delete("c/v.jpg", if_match='"0123456789abcdef0123456789abcdef"')
    assert await store.get("c/v.jpg") == b"v1"


# A create-only put retried after its answer was lost


def _lose_the_first_answer(store: S3ImageStore, operation: str) -> list[str]:
    """The first ``operation`` reaches the server, then its answer is 'lost' (a read timeout)."""
    lost: list[str] = []

    def after_call(**_: Any) -> None:
        if not lost:
            lost.append(operation)
            raise ReadTimeoutError(endpoint_url="http://injected")

    store.client.meta.events.register(f"after-call.s3.{operation}", after_call)
    return lost


@pytest.mark.parametrize(
    ("size", "operation"),
    [(1000, "PutObject"), (12 * MiB, "CompleteMultipartUpload")],
    ids=["single", "multipart"],
)
async def test_a_retried_create_only_put_finds_its_own_sha256(
    store: S3ImageStore, size: int, operation: str
) -> None:
    resilient = ResilientImageStore(store, sleep=no_sleep, circuit_name=uuid.uuid4().hex)
    data = pattern_bytes(size)
    lost = _lose_the_first_answer(store, operation)
    with pytest.raises(ObjectExists):
        await resilient.put("r/photo.jpg", data, content_type="image/jpeg", if_absent=True)
    assert lost == [operation]  # the first attempt landed; the retry found it
    # What the service compares after ObjectExists: the stored SHA-256 is its own.
    assert (await store.head("r/photo.jpg")).sha256 == hashlib.sha256(data).hexdigest()
    assert await store.get("r/photo.jpg") == data
    assert _uploads(store) == []


async def test_a_refused_multipart_put_never_marks_another_object_as_its_own(
    store: S3ImageStore,
) -> None:
    # Someone else's multipart object without a recorded SHA-256 (another tool wrote it).
    theirs = pattern_bytes(12 * MiB)
    upload = store.client.create_multipart_upload(Bucket=store.name, Key="r/x.tif")
    parts = []
    for number, start in enumerate(range(0, len(theirs), 5 * MiB), start=1):
        answer = store.client.upload_part(
            Bucket=store.name,
            Key="r/x.tif",
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=theirs[start : start + 5 * MiB],
        )
        parts.append({"PartNumber": number, "ETag": answer["ETag"]})
    store.client.complete_multipart_upload(
        Bucket=store.name,
        Key="r/x.tif",
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": parts},
    )
    assert composite_etag([p["ETag"] for p in parts]) == (await store.head("r/x.tif")).etag
    mine = bytes(reversed(theirs))
    with pytest.raises(ObjectExists):
        await store.put("r/x.tif", mine, content_type="image/tiff", if_absent=True)
    head = await store.head("r/x.tif")
    assert head.sha256 is None
    assert (
        SHA256_METADATA
        not in store.client.head_object(Bucket=store.name, Key="r/x.tif")["Metadata"]
    )
    # The same bytes in the same parts are recognised: their SHA-256 is recorded.
    with pytest.raises(ObjectExists):
        await store.put("r/x.tif", theirs, content_type="image/tiff", if_absent=True)
    assert (await store.head("r/x.tif")).sha256 == hashlib.sha256(theirs).hexdigest()
    assert await store.get("r/x.tif") == theirs


def test_composite_etags_need_md5_part_etags() -> None:
    md5 = hashlib.md5(b"part", usedforsecurity=False)
    expected = hashlib.md5(md5.digest() * 2, usedforsecurity=False).hexdigest()
    assert composite_etag([f'"{md5.hexdigest()}"', md5.hexdigest().upper()]) == f'"{expected}-2"'
    assert composite_etag(['"not-an-md5"']) is None
    assert composite_etag(['"' + "g" * 32 + '"']) is None
