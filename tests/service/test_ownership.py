"""Fenced writes: what stands under a key is kept, cleared or refused, as the claim says."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime

import pytest

from demeter_storage.adapters.memory.metadata import InMemoryMetadataRepository
from demeter_storage.adapters.memory.store import InMemoryImageStore
from demeter_storage.domain.records import ImageKind, ImageRecord, ImageState
from demeter_storage.service.config import ServiceConfig
from demeter_storage.service.ownership import LostOwnership, Ownership

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _record() -> ImageRecord:
    return ImageRecord(
        image_id=uuid.uuid4(),
        kind=ImageKind.ORIGINAL,
        session_id="s",
        bucket="photos",
        key="s/a.jpg",
        filename="a.jpg",
        content_type="image/jpeg",
        size=None,
        sha256=None,
        state=ImageState.UPLOADING,
        created_at=T0,
        updated_at=T0,
    )


async def _setup() -> tuple[Ownership, InMemoryImageStore, ImageRecord]:
    metadata = InMemoryMetadataRepository()
    record = _record()
    await metadata.add(record)
    store = InMemoryImageStore("photos")
    return Ownership(metadata=metadata, config=ServiceConfig(), clock=lambda: T0), store, record


@pytest.mark.parametrize("kind", ["bytes", "file"])
async def test_the_owner_clears_a_stale_write_and_stores_its_own_bytes(kind: str) -> None:
    ownership, store, record = await _setup()
    await store.put("s/a.jpg", b"a replaced attempt's bytes", content_type="image/jpeg")
    ours = b"the retry's bytes"
    source: bytes | io.BytesIO = ours if kind == "bytes" else io.BytesIO(ours)

    def again() -> bytes | io.BytesIO:  # the data once more, from its start
        if isinstance(source, io.BytesIO):
            source.seek(0)
        return source

    info = await ownership.create(
        store, record, "s/a.jpg", source, content_type="image/jpeg", again=again
    )
    assert info.size == len(ours)
    assert await store.get("s/a.jpg") == ours


async def test_the_same_bytes_already_there_are_kept_as_our_own() -> None:
    ownership, store, record = await _setup()
    first = await store.put("s/a.jpg", b"same bytes", content_type="image/jpeg")
    info = await ownership.create(
        store,
        record,
        "s/a.jpg",
        b"same bytes",
        content_type="image/jpeg",
        again=lambda: b"same bytes",
    )
    assert info.etag == first.etag


async def test_a_record_that_lost_its_claim_changes_nothing() -> None:
    ownership, store, record = await _setup()
    await ownership.metadata.remove([record.image_id])
    await store.put("s/a.jpg", b"the new owner's bytes", content_type="image/jpeg")
    with pytest.raises(LostOwnership):
        await ownership.create(
            store, record, "s/a.jpg", b"late", content_type="image/jpeg", again=lambda: b"late"
        )
    assert await store.get("s/a.jpg") == b"the new owner's bytes"
