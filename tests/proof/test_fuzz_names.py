"""Hostile session ids, filenames and keys: stored exactly, or refused with a typed error.

Every example either succeeds correctly (the bytes round-trip under the NFC
key the rules give, listings and URLs agree, a second upload of the same name
however spelled is ``ImageAlreadyExists``, the delete leaves nothing) or raises
``ValidationError`` / ``TypeError`` and leaves no object and no row. The local
store never creates anything outside its root.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tempfile
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

from demeter_storage.adapters.local.store import LocalImageStore
from demeter_storage.adapters.memory.store import InMemoryImageStore
from demeter_storage.adapters.sql.repository import (
    SqlAlchemyMetadataRepository,
    create_engine,
)
from demeter_storage.adapters.sql.schema import create_schema
from demeter_storage.domain.errors import ImageAlreadyExists, ObjectNotFound, ValidationError
from demeter_storage.service.image_service import ImageService
from demeter_storage.service.schemas import UploadRequest
from demeter_storage.testing import ManualClock
from tests.proof.strategies import (
    JPEG,
    expected_key,
    expected_original_key,
    fuzz_settings,
    keys,
    leftovers,
    memory_service,
    names,
    outcome,
)

REFUSED = (ValidationError, TypeError)


def _nfd(value: object) -> object:
    return unicodedata.normalize("NFD", value) if isinstance(value, str) else value


async def _upload_or_refuse(
    service: ImageService, session_id: object, filename: object, data: bytes
) -> None:
    """Upload under the fuzzed names; check the outcome against the rules."""
    expected = expected_original_key(session_id, filename)
    request = UploadRequest(filename, "image/jpeg")  # type: ignore[arg-type]
    image = await outcome(service.upload_original(data, session_id, request))  # type: ignore[arg-type]
    if isinstance(image, Exception):
        event(f"refused: {type(image).__name__}")
        assert not isinstance(expected, str), f"{expected!r} was refused: {image!r}"
        assert not isinstance(image, ImageAlreadyExists)
        assert await leftovers(service) == []
        return
    event("stored")
    assert isinstance(expected, str), f"{session_id!r}/{filename!r} was accepted"
    assert image.s3_key == expected
    assert f"{image.session_id}/{image.filename}" == expected
    assert (image.size, image.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert await service.download_original(image.s3_key) == data
    # The names as typed (not normalised) reach the same image.
    assert await service.download_original(f"{session_id}/{filename}") == data
    page = await service.list_session_images(session_id)  # type: ignore[arg-type]
    assert [item.s3_key for item in page.items] == [expected]
    assert (await service.get_image(image.image_id)).s3_key == expected
    assert image.url is not None
    signer = await service.originals.url_signer()  # type: ignore[attr-defined]
    assert signer.verify(image.url) == expected
    before = sorted(await leftovers(service))
    # The same names in another Unicode spelling are the same photo.
    with pytest.raises(ImageAlreadyExists):
        await service.upload_original(
            data + b"again",
            _nfd(session_id),  # type: ignore[arg-type]
            UploadRequest(_nfd(filename), "image/jpeg"),  # type: ignore[arg-type]
        )
    assert sorted(await leftovers(service)) == before
    assert await service.download_original(expected) == data
    assert await service.delete_image(image.image_id)
    assert await leftovers(service) == []


@fuzz_settings()
@given(session_id=names, filename=names, tail=st.binary(max_size=64))
def test_session_ids_and_filenames_are_stored_exactly_or_refused(
    loop: asyncio.Runner, session_id: object, filename: object, tail: bytes
) -> None:
    service, _ = memory_service()
    loop.run(_upload_or_refuse(service, session_id, filename, JPEG + tail))


@pytest.fixture
def sqlite_metadata(loop: asyncio.Runner, tmp_path: Path) -> Iterator[SqlAlchemyMetadataRepository]:
    """One SQLite database shared by the examples (each leaves it empty)."""

    async def build() -> SqlAlchemyMetadataRepository:
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'meta.sqlite3'}")
        await create_schema(engine)
        return SqlAlchemyMetadataRepository(engine, owns_engine=True)

    metadata = loop.run(build())
    yield metadata
    loop.run(metadata.aclose())


def _files_under(root: Path) -> list[str]:
    """Every file under ``root`` except the store's own (signing key), relative to it."""
    found = []
    for directory, _, files in os.walk(root):
        for name in files:
            relative = os.path.relpath(os.path.join(directory, name), root)
            if relative.split(os.sep)[1:2] != [".demeter"]:
                found.append(relative)
    return found


@fuzz_settings(weight=0.5)
@given(session_id=names, filename=names, tail=st.binary(max_size=64))
def test_names_on_local_files_and_sqlite_are_stored_exactly_or_refused(
    loop: asyncio.Runner,
    sqlite_metadata: SqlAlchemyMetadataRepository,
    tmp_path: Path,
    session_id: object,
    filename: object,
    tail: bytes,
) -> None:
    # Fresh directories each time: a store's listing walks every directory it has.
    base = Path(tempfile.mkdtemp(dir=tmp_path))
    clock = ManualClock()
    service = ImageService(
        originals=LocalImageStore(base / "orig", name="orig", clock=clock.now, durable=False),
        visualizations=LocalImageStore(base / "viz", name="viz", clock=clock.now, durable=False),
        metadata=sqlite_metadata,
        clock=clock.now,
    )
    loop.run(_upload_or_refuse(service, session_id, filename, JPEG + tail))
    assert set(os.listdir(base)) <= {"orig", "viz"}
    assert _files_under(base) == []
    shutil.rmtree(base)


def _conflicts(key: str, written: set[str]) -> bool:
    """Whether ``key`` and a written key need the same path as a file and a directory."""
    return any(other.startswith(key + "/") or key.startswith(other + "/") for other in written)


async def _local_keys(base: Path, fuzzed: list[object]) -> None:
    root = base / "root"
    store = LocalImageStore(root, name="photos", durable=False)
    written: dict[str, bytes] = {}
    for value in fuzzed:
        data = JPEG + hashlib.sha256(repr(value).encode("utf-8", "replace")).digest()
        expected = expected_key(value) if isinstance(value, str) else None
        info = await outcome(store.put(value, data, content_type="image/jpeg"))  # type: ignore[arg-type]
        if isinstance(info, Exception):
            event(f"put refused: {type(info).__name__}")
            assert expected is None or _conflicts(expected, set(written)), (
                f"{value!r} was refused: {info!r}"
            )
            for call in (store.get, store.head, store.delete):
                if expected is None:
                    with pytest.raises(REFUSED):
                        await call(value)  # type: ignore[operator]
            continue
        event("put stored")
        assert expected is not None, f"{value!r} was accepted"
        assert (info.key, info.size) == (expected, len(data))
        written[expected] = data
    for key, data in written.items():
        assert await store.get(key) == data
        assert b"".join([chunk async for chunk in store.stream(key, chunk_size=7)]) == data
        assert (await store.head(key)).sha256 == hashlib.sha256(data).hexdigest()
        url = await store.presign(key, expires_in=60)
        assert await store.verify_url(url.url) == key
    assert [info.key async for info in store.list()] == sorted(written)
    for key in written:
        await store.delete(key)
        with pytest.raises(ObjectNotFound):
            await store.get(key)
    assert [info.key async for info in store.list()] == []


@fuzz_settings()
@given(fuzzed=st.lists(keys, min_size=1, max_size=3))
@example(fuzzed=["k/" * 509 + "x.jpg", "k/" * 510 + "x.jpg", "k/" * 3])
@example(fuzzed=["../outside.jpg", "s/../../x", "\uff0e\uff0e/x", "/etc/passwd", "s/\x00.jpg"])
def test_keys_on_the_local_store_round_trip_or_are_refused_inside_the_root(
    loop: asyncio.Runner, tmp_path: Path, fuzzed: list[object]
) -> None:
    base = Path(tempfile.mkdtemp(dir=tmp_path))
    loop.run(_local_keys(base, fuzzed))
    assert set(os.listdir(base)) <= {"root"}, f"{fuzzed!r} wrote beside the root"
    root = base / "root"
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            assert not os.path.islink(path)
            assert os.path.realpath(path).startswith(str(root) + os.sep)
    assert _files_under(base) == [], f"{fuzzed!r} left files behind"
    shutil.rmtree(base)


@fuzz_settings(weight=0.5)
@given(fuzzed=st.lists(keys, min_size=1, max_size=3))
def test_keys_on_the_memory_store_round_trip_or_are_refused(
    loop: asyncio.Runner, fuzzed: list[object]
) -> None:
    async def scenario() -> None:
        store = InMemoryImageStore("photos")
        written = set()
        for value in fuzzed:
            expected = expected_key(value) if isinstance(value, str) else None
            info = await outcome(store.put(value, JPEG, content_type="image/jpeg"))  # type: ignore[arg-type]
            if isinstance(info, Exception):
                assert expected is None
                continue
            assert info.key == expected
            written.add(expected)
            assert await store.get(value) == JPEG  # type: ignore[arg-type]
        assert [info.key async for info in store.list()] == sorted(written)

    loop.run(scenario())
