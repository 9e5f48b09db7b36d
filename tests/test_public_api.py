"""What a host app names is importable from the top of the package."""

from __future__ import annotations

import subprocess
import sys

import pytest

import demeter_storage

NAMED_BY_HOST_APPS = (
    "build_service",
    "StorageSettings",
    "ImageService",
    "S3ImageService",
    "UploadRequest",
    "ImageResponse",
    "S3ImageStore",
    "LocalImageStore",
    "InMemoryImageStore",
    "ResilientImageStore",
    "ObstoreImageStore",
    "InMemoryMetadataRepository",
    "SqlAlchemyMetadataRepository",
    "LifecyclePolicy",
)


def test_every_name_a_host_app_uses_is_at_the_top() -> None:
    missing = [name for name in NAMED_BY_HOST_APPS if name not in demeter_storage.__all__]
    assert missing == []
    for name in demeter_storage.__all__:
        assert getattr(demeter_storage, name) is not None, name


def test_every_error_is_at_the_top() -> None:
    errors = {
        name
        for name in dir(demeter_storage.domain.errors)
        if not name.startswith("_")
        and isinstance(getattr(demeter_storage.domain.errors, name), type)
        and issubclass(getattr(demeter_storage.domain.errors, name), Exception)
    }
    assert errors <= set(demeter_storage.__all__)
    assert issubclass(demeter_storage.LostOwnership, demeter_storage.StorageError)


def test_obstore_is_imported_only_when_asked_for() -> None:
    probe = (
        "import sys, demeter_storage\n"
        "before = 'obstore' in sys.modules\n"
        "store = demeter_storage.ObstoreImageStore\n"
        "print(before, 'obstore' in sys.modules, store.__name__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "True", "ObstoreImageStore"]


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        demeter_storage.NoSuchThing  # noqa: B018
