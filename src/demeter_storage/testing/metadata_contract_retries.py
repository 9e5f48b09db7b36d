"""The retry part of the :class:`~demeter_storage.ports.MetadataRepository` contract.

Idempotency keys, recorded ETags and the take-over of an interrupted upload by
its retry. Mixed into
:class:`~demeter_storage.testing.metadata_contract.MetadataRepositoryContract`;
it uses the same ``repository`` fixture.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest

from demeter_storage.domain.errors import ImageAlreadyExists
from demeter_storage.domain.records import ImageKind, ImageRecord, ImageState
from demeter_storage.ports import MetadataRepository

CLAIM_TIMEOUT = timedelta(minutes=10)


class RetryContract:
    """Idempotency keys, ETags and take-overs; subclasses provide ``repository``."""

    # Provided by MetadataRepositoryContract's module (set there to avoid a cycle).
    make_record: Any
    t0: Any

    async def test_mark_ready_records_the_etag(self, repository: MetadataRepository) -> None:
        record = self.make_record()
        await repository.add(record)
        done = await repository.mark_ready(
            record.image_id,
            size=3,
            sha256="a" * 64,
            thumbnail_key=None,
            now=self.t0,
            etag='"9b2cf535f27731c974343645a3985328"',
        )
        assert done is not None
        assert done.etag == '"9b2cf535f27731c974343645a3985328"'
        stored = await repository.get(record.image_id)
        assert stored is not None
        assert stored.etag == done.etag

    async def test_idempotency_keys_are_unique_per_session(
        self, repository: MetadataRepository
    ) -> None:
        first = self.make_record("s1/a.jpg", idempotency_key="phone-42")
        await repository.add(first)
        found = await repository.get_by_idempotency_key("s1", "phone-42")
        assert found is not None
        assert found.image_id == first.image_id
        assert await repository.get_by_idempotency_key("s2", "phone-42") is None
        with pytest.raises(ImageAlreadyExists) as caught:
            await repository.add(self.make_record("s1/b.jpg", idempotency_key="phone-42"))
        assert caught.value.existing_image_id == first.image_id
        await repository.add(self.make_record("s2/a.jpg", idempotency_key="phone-42"))
        await repository.add(self.make_record("s1/c.jpg"))
        await repository.add(self.make_record("s1/d.jpg"))  # many without a key
        await repository.remove([first.image_id])
        assert await repository.get_by_idempotency_key("s1", "phone-42") is None

    async def test_take_over_replaces_an_interrupted_upload(
        self, repository: MetadataRepository
    ) -> None:
        old = self.make_record()
        await repository.add(old)
        retry = self.make_record(idempotency_key="retry-1")
        assert await repository.take_over(
            old.image_id, retry, now=self.t0, claim_timeout=CLAIM_TIMEOUT
        )
        assert await repository.get(old.image_id) is None
        assert await repository.get(retry.image_id) == retry
        owner = await repository.get_by_key(retry.bucket, retry.key)
        assert owner is not None
        assert owner.image_id == retry.image_id
        # The old id is gone: a second take-over of it changes nothing.
        late = self.make_record()
        assert not await repository.take_over(
            old.image_id, late, now=self.t0, claim_timeout=CLAIM_TIMEOUT
        )
        assert await repository.get(late.image_id) is None

    async def test_take_over_never_replaces_a_ready_or_claimed_record(
        self, repository: MetadataRepository
    ) -> None:
        done = self.make_record("s1/done.jpg")
        await repository.add(done)
        await repository.mark_ready(
            done.image_id, size=1, sha256="a" * 64, thumbnail_key=None, now=self.t0
        )
        assert not await repository.take_over(
            done.image_id, self.make_record("s1/done.jpg"), now=self.t0, claim_timeout=CLAIM_TIMEOUT
        )
        stale = self.make_record("s1/stale.jpg")
        await repository.add(stale)
        later = self.t0 + timedelta(hours=2)
        claimed = await repository.claim(
            state=ImageState.UPLOADING,
            updated_before=later,
            now=later,
            claimant="reconciler",
            limit=10,
            claim_timeout=CLAIM_TIMEOUT,
        )
        assert stale.image_id in {record.image_id for record in claimed}
        retry = self.make_record("s1/stale.jpg")
        assert not await repository.take_over(
            stale.image_id, retry, now=later, claim_timeout=CLAIM_TIMEOUT
        )
        # Once the reconciler's claim has lapsed, the retry may take over.
        assert await repository.take_over(
            stale.image_id, retry, now=later + CLAIM_TIMEOUT * 2, claim_timeout=CLAIM_TIMEOUT
        )
        stored = await repository.get(done.image_id)
        assert stored is not None
        assert stored.state is ImageState.READY

    async def test_take_over_refuses_a_key_held_by_another_record(
        self, repository: MetadataRepository
    ) -> None:
        old = self.make_record("s1/old.jpg")
        other = self.make_record("s1/other.jpg")
        await repository.add(old)
        await repository.add(other)
        with pytest.raises(ImageAlreadyExists):
            await repository.take_over(
                old.image_id,
                self.make_record("s1/other.jpg"),
                now=self.t0,
                claim_timeout=CLAIM_TIMEOUT,
            )
        assert await repository.get(old.image_id) == old
        assert await repository.get(other.image_id) == other

    async def test_concurrent_take_overs_have_one_winner(
        self, repository: MetadataRepository
    ) -> None:
        old = self.make_record("s1/race.jpg")
        await repository.add(old)
        retries: list[ImageRecord] = [self.make_record("s1/race.jpg") for _ in range(6)]
        results = await asyncio.gather(
            *(
                repository.take_over(old.image_id, r, now=self.t0, claim_timeout=CLAIM_TIMEOUT)
                for r in retries
            ),
            return_exceptions=True,
        )
        assert results.count(True) == 1, results
        winner = retries[results.index(True)]
        owner = await repository.get_by_key(winner.bucket, winner.key)
        assert owner is not None
        assert owner.image_id == winner.image_id
        losers = [r.image_id for r, won in zip(retries, results, strict=True) if won is not True]
        assert all([await repository.get(image_id) is None for image_id in losers])
        assert await repository.get(uuid.uuid4()) is None

    async def test_mark_deleting_from_a_state_is_conditional(
        self, repository: MetadataRepository
    ) -> None:
        upload = self.make_record("s1/up.jpg")
        await repository.add(upload)
        later = self.t0 + timedelta(seconds=1)
        marked = await repository.mark_deleting(
            upload.image_id, now=later, from_state=ImageState.UPLOADING
        )
        assert [(r.image_id, r.state, r.updated_at) for r in marked] == [
            (upload.image_id, ImageState.DELETING, later)
        ]
        assert (
            await repository.mark_deleting(
                upload.image_id, now=later, from_state=ImageState.UPLOADING
            )
            == []
        )
        done = self.make_record("s1/done.jpg")
        await repository.add(done)
        await repository.mark_ready(
            done.image_id, size=1, sha256="a" * 64, thumbnail_key=None, now=self.t0
        )
        refused = await repository.mark_deleting(
            done.image_id, now=later, from_state=ImageState.UPLOADING
        )
        assert refused == []
        stored = await repository.get(done.image_id)
        assert stored is not None
        assert stored.state is ImageState.READY

    async def test_take_over_finishes_a_stale_delete_without_visualizations(
        self, repository: MetadataRepository
    ) -> None:
        undone = self.make_record("s1/undone.jpg")
        await repository.add(undone)
        await repository.mark_deleting(undone.image_id, now=self.t0)
        retry = self.make_record("s1/undone.jpg")
        cutoff = self.t0 + timedelta(seconds=30)
        assert not await repository.take_over(
            undone.image_id, retry, now=self.t0, claim_timeout=CLAIM_TIMEOUT
        )
        assert not await repository.take_over(
            undone.image_id,
            retry,
            now=self.t0,
            claim_timeout=CLAIM_TIMEOUT,
            deleting_before=self.t0,
        )
        assert await repository.take_over(
            undone.image_id,
            retry,
            now=cutoff,
            claim_timeout=CLAIM_TIMEOUT,
            deleting_before=cutoff,
        )
        assert await repository.get(retry.image_id) == retry
        parent = self.make_record("s1/parent.jpg")
        await repository.add(parent)
        await repository.mark_ready(
            parent.image_id, size=1, sha256="a" * 64, thumbnail_key=None, now=self.t0
        )
        child = self.make_record(
            "s1/viz_p.png",
            bucket="demeter-photos-viz",
            kind=ImageKind.VISUALIZATION,
            parent_id=parent.image_id,
        )
        await repository.add(child)
        await repository.mark_deleting(parent.image_id, now=self.t0)
        assert not await repository.take_over(
            parent.image_id,
            self.make_record("s1/parent.jpg"),
            now=cutoff,
            claim_timeout=CLAIM_TIMEOUT,
            deleting_before=cutoff,
        )
        assert await repository.get(child.image_id) is not None
