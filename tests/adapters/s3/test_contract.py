"""The shared contracts and state machine on the S3 store: moto in-process and real SeaweedFS."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator

import httpx
import pytest
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

from demeter_storage import ImageStore
from demeter_storage.adapters.s3.store import S3ImageStore
from demeter_storage.testing import (
    ImageStoreContract,
    SeaweedFSServer,
    ServerCheckedUrlContract,
    SignedUrlHarness,
    image_store_state_machine,
)
from demeter_storage.testing.moto_s3 import SMALL_PARTS, moto_s3_store

_bucket_numbers = itertools.count(1)


def fresh_bucket(prefix: str) -> str:
    return f"{prefix}-{next(_bucket_numbers)}"


class TestS3StoreOnMotoContract(ImageStoreContract):
    keeps_objects_in_memory = True  # moto holds the objects in this process
    # moto ignores If-None-Match on CopyObject, but the store's create-only copy
    # is completed by a CompleteMultipartUpload, on which moto enforces it.

    @pytest.fixture
    async def store(self) -> AsyncIterator[ImageStore]:
        with moto_s3_store() as store:
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


class TestS3StoreUrlsOnSeaweedFS(ServerCheckedUrlContract):
    # boto3's default client presigns with SigV2, which signs no If-None-Match:
    # the store's URLs are SigV4 whatever client it is given.
    @pytest.fixture(params=["built from the settings", "given boto3's default client"])
    async def signed_urls(
        self, seaweedfs_server: SeaweedFSServer, request: pytest.FixtureRequest
    ) -> AsyncIterator[SignedUrlHarness]:
        bucket = fresh_bucket("urls")
        if request.param == "built from the settings":
            store = S3ImageStore(bucket, config=seaweedfs_server.s3_config())
        else:
            store = S3ImageStore(bucket, client=seaweedfs_server.client())
        await store.ensure_bucket()
        async with httpx.AsyncClient(timeout=10) as http:
            yield SignedUrlHarness(store, http)
        await store.aclose()


@contextlib.asynccontextmanager
async def _moto_machine_store() -> AsyncIterator[ImageStore]:
    with moto_s3_store() as store:
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
