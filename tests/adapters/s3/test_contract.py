"""The shared contract and state machine on the S3 store: moto in-process and real SeaweedFS."""

from __future__ import annotations

import contextlib
import itertools
import threading
import unittest.mock
from collections.abc import AsyncIterator, Iterator
from typing import Any

import boto3
import pytest
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test
from moto import mock_aws
from moto.core.botocore_stubber import BotocoreStubber

from demeter_storage import ImageStore
from demeter_storage.adapters.s3.config import MiB, S3Config
from demeter_storage.adapters.s3.store import S3ImageStore
from demeter_storage.testing import ImageStoreContract, SeaweedFSServer, image_store_state_machine

# Small parts keep a 64 MiB streamed put well under the contract's 32 MiB bound.
SMALL_PARTS = {"multipart_threshold": 5 * MiB, "part_size": 5 * MiB, "multipart_concurrency": 2}
_bucket_numbers = itertools.count(1)


def fresh_bucket(prefix: str) -> str:
    return f"{prefix}-{next(_bucket_numbers)}"


@contextlib.contextmanager
def one_moto_request_at_a_time() -> Iterator[None]:
    """Serialise moto's in-process S3, as a real server keeps each request whole.

    moto is not thread-safe: a PUT that replaces a key closes the replaced key's
    buffer while the PUT that wrote it may still be reading it for its ETag, so
    concurrent PUTs of one key failed with "I/O operation on closed file".
    """
    lock = threading.Lock()
    handle = BotocoreStubber.process_request

    def one_at_a_time(self: BotocoreStubber, request: Any) -> Any:
        with lock:
            return handle(self, request)

    with unittest.mock.patch.object(BotocoreStubber, "process_request", one_at_a_time):
        yield


@contextlib.contextmanager
def moto_store() -> Iterator[S3ImageStore]:
    with mock_aws(), one_moto_request_at_a_time():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="contract")
        yield S3ImageStore("contract", config=S3Config(region="us-east-1", **SMALL_PARTS))


class TestS3StoreOnMotoContract(ImageStoreContract):
    keeps_objects_in_memory = True  # moto holds the objects in this process
    # moto ignores If-None-Match on CopyObject, but the store's create-only copy
    # is completed by a CompleteMultipartUpload, on which moto enforces it.

    @pytest.fixture
    async def store(self) -> AsyncIterator[ImageStore]:
        with moto_store() as store:
            yield store
            await store.aclose()


class TestS3StoreOnSeaweedFSContract(ImageStoreContract):
    @pytest.fixture
    async def store(self, seaweedfs_server: SeaweedFSServer) -> AsyncIterator[ImageStore]:
        store = S3ImageStore(
            fresh_bucket("contract"), config=seaweedfs_server.s3_config(**SMALL_PARTS)
        )
        await store.ensure_bucket()
        yield store
        await store.aclose()


@contextlib.asynccontextmanager
async def _moto_machine_store() -> AsyncIterator[ImageStore]:
    with moto_store() as store:
        yield store
        await store.aclose()


TestS3StoreOnMotoMachine = image_store_state_machine(_moto_machine_store).TestCase
TestS3StoreOnMotoMachine.settings = settings(max_examples=25, stateful_step_count=20, deadline=None)


@pytest.fixture
def seaweedfs_machine(seaweedfs_server: SeaweedFSServer) -> type:
    @contextlib.asynccontextmanager
    async def factory() -> AsyncIterator[ImageStore]:
        store = S3ImageStore(fresh_bucket("machine"), config=seaweedfs_server.s3_config())
        await store.ensure_bucket()
        yield store
        await store.aclose()

    return image_store_state_machine(factory)


def test_s3_store_on_seaweedfs_agrees_with_the_model(seaweedfs_machine: type) -> None:
    run_state_machine_as_test(
        seaweedfs_machine,
        settings=settings(max_examples=15, stateful_step_count=20, deadline=None),
    )
