"""The shared contract and state machine, run against the in-memory and local stores."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import settings

from demeter_storage import ImageStore, InMemoryImageStore, LocalImageStore
from demeter_storage.testing import ImageStoreContract, image_store_state_machine


class TestInMemoryStoreContract(ImageStoreContract):
    keeps_objects_in_memory = True

    @pytest.fixture
    def store(self) -> ImageStore:
        return InMemoryImageStore()


class TestLocalStoreContract(ImageStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> ImageStore:
        return LocalImageStore(tmp_path / "bucket")


@contextlib.asynccontextmanager
async def _local_store() -> AsyncIterator[ImageStore]:
    root = tempfile.mkdtemp(prefix="demeter-sm-")
    try:
        yield LocalImageStore(Path(root) / "bucket", durable=False)
    finally:
        shutil.rmtree(root)


@contextlib.asynccontextmanager
async def _memory_store() -> AsyncIterator[ImageStore]:
    yield InMemoryImageStore()


_machine_settings = settings(max_examples=40, stateful_step_count=25, deadline=None)

TestLocalStoreMachine = image_store_state_machine(_local_store).TestCase
TestLocalStoreMachine.settings = _machine_settings
TestInMemoryStoreMachine = image_store_state_machine(_memory_store).TestCase
TestInMemoryStoreMachine.settings = _machine_settings
