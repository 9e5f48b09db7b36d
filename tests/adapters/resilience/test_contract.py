"""The shared contract and state machine on ResilientImageStore, around in-memory and S3 stores.

The service always wraps its stores, so the wrapper must keep every promise of
the port: errors pass through untranslated, streams and listings stay lazy, and
conditional writes keep their meaning across retries.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
from hypothesis import settings

from demeter_storage import ImageStore, InMemoryImageStore
from demeter_storage.adapters.resilience.store import ResilientImageStore
from demeter_storage.testing import ImageStoreContract, image_store_state_machine, no_sleep
from demeter_storage.testing.moto_s3 import moto_s3_store


def _resilient(inner: ImageStore) -> ResilientImageStore:
    """Wrap ``inner`` with a circuit of its own and retries that never really wait."""
    return ResilientImageStore(inner, sleep=no_sleep, circuit_name=f"contract-{uuid.uuid4().hex}")


class TestResilientInMemoryStoreContract(ImageStoreContract):
    keeps_objects_in_memory = True

    @pytest.fixture
    async def store(self) -> AsyncIterator[ImageStore]:
        store = _resilient(InMemoryImageStore())
        yield store
        await store.aclose()


class TestResilientS3StoreOnMotoContract(ImageStoreContract):
    keeps_objects_in_memory = True  # moto holds the objects in this process

    @pytest.fixture
    async def store(self) -> AsyncIterator[ImageStore]:
        with moto_s3_store() as inner:
            store = _resilient(inner)
            yield store
            await store.aclose()


@contextlib.asynccontextmanager
async def _resilient_memory_store() -> AsyncIterator[ImageStore]:
    store = _resilient(InMemoryImageStore())
    yield store
    await store.aclose()


TestResilientInMemoryStoreMachine = image_store_state_machine(_resilient_memory_store).TestCase
TestResilientInMemoryStoreMachine.settings = settings(
    max_examples=30, stateful_step_count=25, deadline=None
)
