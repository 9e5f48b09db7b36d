"""The contract every :class:`~demeter_storage.ports.MetadataRepository` must pass.

Subclass :class:`MetadataRepositoryContract` and give it a ``repository``
fixture returning an empty repository::

    class TestMyRepository(MetadataRepositoryContract):
        @pytest.fixture
        async def repository(self):
            ...
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest

from demeter_storage.domain.errors import ImageAlreadyExists, ValidationError
from demeter_storage.domain.records import ImageKind, ImageRecord, ImageState
from demeter_storage.ports import MetadataRepository
from demeter_storage.testing.metadata_contract_retries import RetryContract

T0 = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)


def make_record(key: str = "s1/a.jpg", **changes: Any) -> ImageRecord:
    """An uploading original in ``demeter-photos-original`` (fields overridable)."""
    session, filename = key.split("/", 1)
    values: dict[str, Any] = {
        "image_id": uuid.uuid4(),
        "kind": ImageKind.ORIGINAL,
        "session_id": session,
        "bucket": "demeter-photos-original",
        "key": key,
        "filename": filename,
        "content_type": "image/jpeg",
        "size": None,
        "sha256": None,
        "state": ImageState.UPLOADING,
        "created_at": T0,
        "updated_at": T0,
    }
    values.update(changes)
    return ImageRecord(**values)


async def ready(repository: MetadataRepository, record: ImageRecord) -> ImageRecord:
    """Add ``record`` and mark it ready."""
    await repository.add(record)
    result = await repository.mark_ready(
        record.image_id, size=10, sha256="a" * 64, thumbnail_key=None, now=T0
    )
    assert result is not None
    return result


@pytest.mark.asyncio
class MetadataRepositoryContract(RetryContract):
    """Tests every MetadataRepository must pass. Subclasses provide ``repository``."""

    make_record = staticmethod(make_record)
    t0 = T0

    @pytest.fixture
    def repository(self) -> MetadataRepository:
        """Override: return (or yield) an empty repository."""
        raise NotImplementedError("subclasses provide a `repository` fixture")

    async def test_add_then_get_round_trips_every_field(
        self, repository: MetadataRepository
    ) -> None:
        record = make_record(
            "s1/ä b.jpg",
            metadata={"camera": "x1"},
            upload_expires_at=T0 + timedelta(minutes=15),
            created_at=T0 + timedelta(microseconds=123),
        )
        await repository.add(record)
        stored = await repository.get(record.image_id)
        assert stored == record
        assert stored is not None
        assert stored.created_at.tzinfo is not None
        assert await repository.get(uuid.uuid4()) is None

    async def test_a_taken_key_or_id_is_refused(self, repository: MetadataRepository) -> None:
        first = make_record()
        await repository.add(first)
        with pytest.raises(ImageAlreadyExists) as caught:
            await repository.add(make_record())
        assert caught.value.existing_image_id == first.image_id
        with pytest.raises(ImageAlreadyExists):
            await repository.add(make_record("s1/other.jpg", image_id=first.image_id))
        await repository.add(make_record(bucket="demeter-photos-viz"))

    async def test_a_record_whose_parent_is_missing_is_refused(
        self, repository: MetadataRepository
    ) -> None:
        orphan = make_record("s1/viz_a.png", kind=ImageKind.VISUALIZATION, parent_id=uuid.uuid4())
        with pytest.raises(ValidationError, match="names no image record") as caught:
            await repository.add(orphan)
        assert not isinstance(caught.value, ImageAlreadyExists)
        assert await repository.get(orphan.image_id) is None
        parent = make_record()
        await repository.add(parent)
        child = make_record("s1/viz_b.png", kind=ImageKind.VISUALIZATION, parent_id=parent.image_id)
        await repository.add(child)
        assert await repository.get(child.image_id) == child

    async def test_concurrent_adds_of_one_key_let_exactly_one_through(
        self, repository: MetadataRepository
    ) -> None:
        results = await asyncio.gather(
            *(repository.add(make_record("s1/race.jpg")) for _ in range(8)),
            return_exceptions=True,
        )
        assert sum(result is None for result in results) == 1
        assert all(isinstance(r, ImageAlreadyExists) for r in results if r is not None)

    async def test_get_by_key_finds_objects_and_thumbnails(
        self, repository: MetadataRepository
    ) -> None:
        record = make_record()
        await repository.add(record)
        await repository.mark_ready(
            record.image_id, size=3, sha256="b" * 64, thumbnail_key="s1/thumb_a.jpg.jpg", now=T0
        )
        found = await repository.get_by_key("demeter-photos-original", "s1/thumb_a.jpg.jpg")
        assert found is not None
        assert found.image_id == record.image_id
        assert await repository.get_by_key("demeter-photos-viz", "s1/a.jpg") is None

    async def test_a_key_held_as_a_thumbnail_is_taken(self, repository: MetadataRepository) -> None:
        # get_by_key answers for objects and thumbnails alike, so one key names
        # one record whichever it is. (The service's key rules keep images off
        # ``thumb_`` names; the port promises it for any key.)
        record = make_record()
        await repository.add(record)
        await repository.mark_ready(
            record.image_id, size=3, sha256="b" * 64, thumbnail_key="s1/t.jpg", now=T0
        )
        with pytest.raises(ImageAlreadyExists):
            await repository.add(make_record("s1/t.jpg"))
        found = await repository.get_by_key("demeter-photos-original", "s1/t.jpg")
        assert found is not None
        assert found.image_id == record.image_id

    async def test_mark_ready_only_moves_uploading_records(
        self, repository: MetadataRepository
    ) -> None:
        record = make_record()
        await repository.add(record)
        later = T0 + timedelta(seconds=5)
        done = await repository.mark_ready(
            record.image_id, size=10, sha256="c" * 64, thumbnail_key=None, now=later
        )
        assert done is not None
        assert (done.state, done.size, done.sha256, done.updated_at) == (
            ImageState.READY,
            10,
            "c" * 64,
            later,
        )
        again = await repository.mark_ready(
            record.image_id, size=11, sha256="d" * 64, thumbnail_key=None, now=later
        )
        assert again is None
        assert (
            await repository.mark_ready(
                uuid.uuid4(), size=1, sha256="e" * 64, thumbnail_key=None, now=later
            )
            is None
        )

    async def test_mark_deleting_takes_the_visualizations_along(
        self, repository: MetadataRepository
    ) -> None:
        parent = await ready(repository, make_record())
        child = await ready(
            repository,
            make_record(
                "s1/viz_a.jpg",
                bucket="demeter-photos-viz",
                kind=ImageKind.VISUALIZATION,
                parent_id=parent.image_id,
            ),
        )
        stored = await repository.get(parent.image_id)
        assert stored is not None
        assert stored.visualization_keys == ("s1/viz_a.jpg",)
        marked = await repository.mark_deleting(parent.image_id, now=T0)
        assert {r.image_id for r in marked} == {parent.image_id, child.image_id}
        assert all(r.state is ImageState.DELETING for r in marked)
        assert len(await repository.mark_deleting(parent.image_id, now=T0)) == 2
        assert await repository.mark_deleting(uuid.uuid4(), now=T0) == []
        assert await repository.list_session("s1", limit=10) == []

    async def test_remove_is_idempotent_and_unlinks_survivors(
        self, repository: MetadataRepository
    ) -> None:
        parent = await ready(repository, make_record())
        child = await ready(
            repository,
            make_record("s1/viz_a.jpg", kind=ImageKind.VISUALIZATION, parent_id=parent.image_id),
        )
        await repository.remove([parent.image_id])
        await repository.remove([parent.image_id, uuid.uuid4()])
        await repository.remove([])
        assert await repository.get(parent.image_id) is None
        survivor = await repository.get(child.image_id)
        assert survivor is not None
        assert survivor.parent_id is None

    async def test_sessions_list_ready_records_in_pages(
        self, repository: MetadataRepository
    ) -> None:
        for name in ("c", "a", "b", "d"):
            await ready(repository, make_record(f"s1/{name}.jpg"))
        await ready(repository, make_record("s1/a.jpg", bucket="demeter-photos-viz"))
        await repository.add(make_record("s1/uploading.jpg"))
        await ready(repository, make_record("s2/a.jpg"))
        first = await repository.list_session("s1", limit=3)
        assert [(r.bucket[-3:], r.key) for r in first] == [
            ("nal", "s1/a.jpg"),
            ("nal", "s1/b.jpg"),
            ("nal", "s1/c.jpg"),
        ]
        rest = await repository.list_session("s1", limit=3, after=(first[-1].bucket, first[-1].key))
        assert [(r.bucket[-3:], r.key) for r in rest] == [("nal", "s1/d.jpg"), ("viz", "s1/a.jpg")]
        assert await repository.list_session("nobody", limit=3) == []

    async def test_claims_take_stale_records_once(self, repository: MetadataRepository) -> None:
        stale = [make_record(f"s1/{i}.jpg", updated_at=T0) for i in range(6)]
        fresh = make_record("s1/fresh.jpg", updated_at=T0 + timedelta(hours=2))
        for record in [*stale, fresh]:
            await repository.add(record)
        cutoff = T0 + timedelta(hours=1)
        now = T0 + timedelta(hours=3)

        async def claim(who: str) -> list[ImageRecord]:
            return await repository.claim(
                state=ImageState.UPLOADING,
                updated_before=cutoff,
                now=now,
                claimant=who,
                limit=4,
                claim_timeout=timedelta(minutes=10),
            )

        batches = await asyncio.gather(*(claim(f"worker-{i}") for i in range(4)))
        claimed = [r.image_id for batch in batches for r in batch]
        assert len(claimed) == len(set(claimed)) == 6
        assert fresh.image_id not in claimed
        assert await claim("late") == []
        await repository.release([stale[0].image_id])
        assert [r.image_id for r in await claim("retry")] == [stale[0].image_id]

    async def test_an_expired_claim_can_be_taken_over(self, repository: MetadataRepository) -> None:
        record = make_record()
        await repository.add(record)
        await repository.mark_deleting(record.image_id, now=T0)

        async def claim(now: datetime) -> list[ImageRecord]:
            return await repository.claim(
                state=ImageState.DELETING,
                updated_before=now,
                now=now,
                claimant="w",
                limit=10,
                claim_timeout=timedelta(minutes=10),
            )

        assert len(await claim(T0 + timedelta(minutes=1))) == 1
        assert await claim(T0 + timedelta(minutes=5)) == []
        assert len(await claim(T0 + timedelta(minutes=12))) == 1

    async def test_direct_uploads_are_stale_once_their_upload_expired(
        self, repository: MetadataRepository
    ) -> None:
        # Old records whose upload window is still open stay; recent ones whose
        # window closed go; ordinary uploads keep the updated_at rule.
        long_window = make_record("s1/long.jpg", upload_expires_at=T0 + timedelta(hours=5))
        closed = make_record(
            "s1/closed.jpg",
            updated_at=T0 + timedelta(hours=2),
            upload_expires_at=T0 + timedelta(hours=2, minutes=15),
        )
        ordinary = make_record("s1/ordinary.jpg")
        for record in (long_window, closed, ordinary):
            await repository.add(record)
        claimed = await repository.claim(
            state=ImageState.UPLOADING,
            updated_before=T0 + timedelta(hours=1),
            now=T0 + timedelta(hours=3),
            claimant="w",
            limit=10,
            claim_timeout=timedelta(minutes=10),
            uploads_expired_before=T0 + timedelta(hours=3),
        )
        assert {r.image_id for r in claimed} == {closed.image_id, ordinary.image_id}

    async def test_a_claimed_upload_cannot_become_ready(
        self, repository: MetadataRepository
    ) -> None:
        record = make_record()
        await repository.add(record)
        claimed = await repository.claim(
            state=ImageState.UPLOADING,
            updated_before=T0 + timedelta(hours=2),
            now=T0 + timedelta(hours=2),
            claimant="reconciler",
            limit=1,
            claim_timeout=timedelta(minutes=10),
        )
        assert [r.image_id for r in claimed] == [record.image_id]
        done = await repository.mark_ready(
            record.image_id, size=1, sha256="b" * 64, thumbnail_key=None, now=T0
        )
        assert done is None
        stored = await repository.get(record.image_id)
        assert stored is not None
        assert stored.state is ImageState.UPLOADING
        await repository.release([record.image_id])
        assert await repository.mark_ready(
            record.image_id, size=1, sha256="b" * 64, thumbnail_key=None, now=T0
        )

    async def test_records_yields_every_state(self, repository: MetadataRepository) -> None:
        uploading = make_record("s1/u.jpg")
        await repository.add(uploading)
        done = await ready(repository, make_record("s1/r.jpg"))
        going = await ready(repository, make_record("s1/d.jpg"))
        await repository.mark_deleting(going.image_id, now=T0)
        states = {r.image_id: r.state async for r in repository.records()}
        assert states == {
            uploading.image_id: ImageState.UPLOADING,
            done.image_id: ImageState.READY,
            going.image_id: ImageState.DELETING,
        }

    async def test_expiry_candidates_are_old_ready_records_under_a_prefix(
        self, repository: MetadataRepository
    ) -> None:
        old = [await ready(repository, make_record(f"s1/{n}.jpg", created_at=T0)) for n in range(3)]
        await ready(repository, make_record("s1/young.jpg", created_at=T0 + timedelta(days=5)))
        await ready(repository, make_record("s2/other-prefix.jpg", created_at=T0))
        await ready(repository, make_record("s1/other.jpg", bucket="elsewhere", created_at=T0))
        await repository.add(make_record("s1/uploading.jpg", created_at=T0))

        async def page(after: uuid.UUID | None) -> list[ImageRecord]:
            return await repository.expiry_candidates(
                bucket="demeter-photos-original",
                prefix="s1/",
                created_before=T0 + timedelta(days=1),
                limit=2,
                after=after,
            )

        first = await page(None)
        second = await page(first[-1].image_id)
        assert len(first) == 2
        assert [r.image_id for r in first + second] == sorted(r.image_id for r in old)
        assert await page(second[-1].image_id) == []

    async def test_mark_expired_moves_only_ready_records(
        self, repository: MetadataRepository
    ) -> None:
        done = await ready(repository, make_record("s1/r.jpg"))
        uploading = make_record("s1/u.jpg")
        await repository.add(uploading)
        later = T0 + timedelta(days=1)
        assert await repository.mark_expired(done.image_id, now=later)
        assert not await repository.mark_expired(done.image_id, now=later)
        assert not await repository.mark_expired(uploading.image_id, now=later)
        assert not await repository.mark_expired(uuid.uuid4(), now=later)
        expired = await repository.get(done.image_id)
        assert expired is not None
        assert (expired.state, expired.updated_at) == (ImageState.EXPIRED, later)
        still = await repository.get(uploading.image_id)
        assert still is not None
        assert still.state is ImageState.UPLOADING

    async def test_records_are_immutable_values(self, repository: MetadataRepository) -> None:
        record = make_record(metadata={"k": "v"})
        await repository.add(record)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            record.state = ImageState.READY  # type: ignore[misc]
