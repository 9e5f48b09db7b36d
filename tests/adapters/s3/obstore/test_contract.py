"""The shared contracts and state machine on the obstore store, on real SeaweedFS."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator

import httpx
import pytest
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

pytest.importorskip(
    "obstore", reason="obstore is not installed (pip install 'demeter-storage[fast]')"
)

from demeter_storage import ImageStore
from demeter_storage.adapters.resilience.store import ResilientImageStore
from demeter_storage.adapters.s3.obstore.store import ObstoreImageStore
from demeter_storage.testing import (
    ImageStoreContract,
    SeaweedFSServer,
    ServerCheckedUrlContract,
    SignedUrlHarness,
    image_store_state_machine,
)
from demeter_storage.testing.moto_s3 import SMALL_PARTS

_bucket_numbers = itertools.count(1)


def fresh_bucket(prefix: str) -> str:
    return f"{prefix}-obstore-{next(_bucket_numbers)}"


class TestObstoreStoreOnSeaweedFSContract(ImageStoreContract):
    @pytest.fixture
    async def store(self, seaweedfs_server: SeaweedFSServer) -> AsyncIterator[ImageStore]:
        store = ObstoreImageStore(
            fresh_bucket("contract"), config=seaweedfs_server.s3_config(**SMALL_PARTS)
        )
        await store.ensure_bucket()
        yield store
        await store.aclose()


class TestResilientObstoreStoreOnSeaweedFSContract(ImageStoreContract):
    """The wrapped store keeps the contract too (the service always wraps it)."""

    @pytest.fixture
    async def store(self, seaweedfs_server: SeaweedFSServer) -> AsyncIterator[ImageStore]:
        inner = ObstoreImageStore(
            fresh_bucket("resilient"), config=seaweedfs_server.s3_config(**SMALL_PARTS)
        )
        await inner.ensure_bucket()
        store = ResilientImageStore(inner)
        yield store
        await store.aclose()


class TestObstoreStoreUrlsOnSeaweedFS(ServerCheckedUrlContract):
    @pytest.fixture
    async def signed_urls(
        self, seaweedfs_server: SeaweedFSServer
    ) -> AsyncIterator[SignedUrlHarness]:
        store = ObstoreImageStore(fresh_bucket("urls"), config=seaweedfs_server.s3_config())
        await store.ensure_bucket()
        async with httpx.AsyncClient(timeout=10) as http:
            yield SignedUrlHarness(store, http)
        await store.aclose()


@pytest.fixture
def seaweedfs_machine(seaweedfs_server: SeaweedFSServer) -> type:
    @contextlib.asynccontextmanager
    async def factory() -> AsyncIterator[ImageStore]:
        store = ObstoreImageStore(fresh_bucket("machine"), config=seaweedfs_server.s3_config())
        await store.ensure_bucket()
        yield store
        await store.aclose()

    return image_store_state_machine(factory)


def test_obstore_store_on_seaweedfs_agrees_with_the_model(seaweedfs_machine: type) -> None:
    run_state_machine_as_test(
        seaweedfs_machine,
        settings=settings(max_examples=15, stateful_step_count=20, deadline=None),
    )
