"""An in-memory :class:`~demeter_storage.ports.MetadataRepository` for tests and development.

Every method runs without awaiting in between its reads and writes, so under
asyncio each is atomic, like a transaction.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta

import attrs

from demeter_storage.domain.errors import ImageAlreadyExists, missing_parent
from demeter_storage.domain.records import ImageRecord, ImageState
from demeter_storage.ports import MetadataRepository


@attrs.frozen
class _Claim:
    claimant: str
    at: datetime


class InMemoryMetadataRepository(MetadataRepository):
    """Records in dicts; each instance is isolated."""

    def __init__(self) -> None:
        self._records: dict[uuid.UUID, ImageRecord] = {}
        self._claims: dict[uuid.UUID, _Claim] = {}
        # Indexes, as a database keeps them: lookups stay O(1) however many records.
        self._owners: dict[tuple[str, str], uuid.UUID] = {}
        self._idempotent: dict[tuple[str, str], uuid.UUID] = {}
        self._children: dict[uuid.UUID, set[uuid.UUID]] = {}

    def __repr__(self) -> str:
        return f"InMemoryMetadataRepository(records={len(self._records)})"

    def _store(self, record: ImageRecord) -> None:
        """Insert or replace ``record``, keeping the indexes in step."""
        previous = self._records.get(record.image_id)
        if previous is not None:
            self._unindex(previous)
        self._records[record.image_id] = record
        for key in record.object_keys:
            self._owners[(record.bucket, key)] = record.image_id
        if record.idempotency_key is not None:
            self._idempotent[(record.session_id, record.idempotency_key)] = record.image_id
        if record.parent_id is not None:
            self._children.setdefault(record.parent_id, set()).add(record.image_id)

    def _drop(self, image_id: uuid.UUID) -> None:
        record = self._records.pop(image_id, None)
        if record is not None:
            self._unindex(record)

    def _unindex(self, record: ImageRecord) -> None:
        for key in record.object_keys:
            if self._owners.get((record.bucket, key)) == record.image_id:
                del self._owners[(record.bucket, key)]
        if record.idempotency_key is not None:
            idempotent = (record.session_id, record.idempotency_key)
            if self._idempotent.get(idempotent) == record.image_id:
                del self._idempotent[idempotent]
        parent_id = record.parent_id
        siblings = None if parent_id is None else self._children.get(parent_id)
        if parent_id is not None and siblings is not None:
            siblings.discard(record.image_id)
            if not siblings:
                del self._children[parent_id]

    def _with_children(self, record: ImageRecord) -> ImageRecord:
        children = (self._records[i] for i in self._children.get(record.image_id, ()))
        keys = sorted(child.key for child in children if child.state is ImageState.READY)
        return attrs.evolve(record, visualization_keys=tuple(keys))

    def _owner(self, bucket: str, key: str) -> ImageRecord | None:
        image_id = self._owners.get((bucket, key))
        return None if image_id is None else self._records[image_id]

    def _holder(self, record: ImageRecord) -> uuid.UUID | None:
        """The id of a record holding ``record``'s key or idempotency key, if any."""
        holder = self._owners.get((record.bucket, record.key))
        if holder is None and record.idempotency_key is not None:
            holder = self._idempotent.get((record.session_id, record.idempotency_key))
        return holder

    async def add(self, record: ImageRecord) -> None:
        """Insert a new record (``ImageAlreadyExists`` when its id or a key is taken)."""
        holder = self._holder(record)
        if holder is not None or record.image_id in self._records:
            raise ImageAlreadyExists(record.bucket, record.key, holder or record.image_id)
        if record.parent_id is not None and record.parent_id not in self._records:
            raise missing_parent(record.parent_id)
        self._store(attrs.evolve(record, visualization_keys=()))

    async def take_over(
        self,
        old_id: uuid.UUID,
        record: ImageRecord,
        *,
        now: datetime,
        claim_timeout: timedelta,
        deleting_before: datetime | None = None,
    ) -> bool:
        """Replace an unclaimed uploading (or stale deleting) record by ``record``, atomically."""
        old = self._records.get(old_id)
        claim = self._claims.get(old_id)
        if old is None or (claim is not None and claim.at >= now - claim_timeout):
            return False
        stale_delete = (
            deleting_before is not None
            and old.state is ImageState.DELETING
            and old.updated_at < deleting_before
            and not self._children.get(old_id)
        )
        if old.state is not ImageState.UPLOADING and not stale_delete:
            return False
        self._drop(old_id)
        holder = self._holder(record)
        if holder is not None or record.image_id in self._records:
            self._store(old)  # nothing changes
            raise ImageAlreadyExists(record.bucket, record.key, holder)
        self._claims.pop(old_id, None)
        self._store(attrs.evolve(record, visualization_keys=()))
        return True

    async def get_by_idempotency_key(
        self, session_id: str, idempotency_key: str
    ) -> ImageRecord | None:
        """The session's record created with ``idempotency_key``, or None."""
        image_id = self._idempotent.get((session_id, idempotency_key))
        return None if image_id is None else self._with_children(self._records[image_id])

    async def get(self, image_id: uuid.UUID) -> ImageRecord | None:
        """The record with this id, or None."""
        record = self._records.get(image_id)
        return None if record is None else self._with_children(record)

    async def get_by_key(self, bucket: str, key: str) -> ImageRecord | None:
        """The record owning ``key`` in ``bucket``, or None."""
        record = self._owner(bucket, key)
        return None if record is None else self._with_children(record)

    async def mark_ready(
        self,
        image_id: uuid.UUID,
        *,
        size: int,
        sha256: str,
        thumbnail_key: str | None,
        now: datetime,
        etag: str | None = None,
    ) -> ImageRecord | None:
        """Move an uploading record to ready."""
        record = self._records.get(image_id)
        if (
            record is None
            or record.state is not ImageState.UPLOADING
            or image_id in self._claims  # a reconciler is removing it
        ):
            return None
        ready = attrs.evolve(
            record,
            state=ImageState.READY,
            size=size,
            sha256=sha256,
            thumbnail_key=thumbnail_key,
            updated_at=now,
            etag=etag,
        )
        self._store(ready)
        return self._with_children(ready)

    async def mark_deleting(
        self, image_id: uuid.UUID, *, now: datetime, from_state: ImageState | None = None
    ) -> builtins.list[ImageRecord]:
        """Mark the record and its visualizations deleting."""
        record = self._records.get(image_id)
        if record is None or (from_state is not None and record.state is not from_state):
            return []
        family = [image_id, *self._children.get(image_id, ())]
        result = []
        for record in [self._records[member] for member in family]:
            marked = record
            if record.state is not ImageState.DELETING:
                marked = attrs.evolve(record, state=ImageState.DELETING, updated_at=now)
                self._store(marked)
            result.append(marked)
        return result

    async def remove(self, image_ids: Sequence[uuid.UUID]) -> None:
        """Delete these records (their remaining visualizations lose their link)."""
        removed = set(image_ids)
        for image_id in removed:
            self._drop(image_id)
            self._claims.pop(image_id, None)
        for parent_id in removed:
            for child_id in list(self._children.get(parent_id, ())):
                self._store(attrs.evolve(self._records[child_id], parent_id=None))

    async def list_session(
        self, session_id: str, *, limit: int, after: tuple[str, str] | None = None
    ) -> builtins.list[ImageRecord]:
        """Ready records of a session, in ``(bucket, key)`` order."""
        ready = sorted(
            (
                r
                for r in self._records.values()
                if r.session_id == session_id
                and r.state is ImageState.READY
                and (after is None or (r.bucket, r.key) > after)
            ),
            key=lambda r: (r.bucket, r.key),
        )
        return [self._with_children(r) for r in ready[:limit]]

    async def claim(
        self,
        *,
        state: ImageState,
        updated_before: datetime,
        now: datetime,
        claimant: str,
        limit: int,
        claim_timeout: timedelta,
        uploads_expired_before: datetime | None = None,
    ) -> builtins.list[ImageRecord]:
        """Claim stale records atomically."""
        claimed: builtins.list[ImageRecord] = []
        for record in sorted(self._records.values(), key=lambda r: r.updated_at):
            if len(claimed) >= limit:
                break
            existing = self._claims.get(record.image_id)
            if (
                record.state is state
                and _is_stale(record, updated_before, uploads_expired_before)
                and (existing is None or existing.at < now - claim_timeout)
            ):
                self._claims[record.image_id] = _Claim(claimant, now)
                claimed.append(self._with_children(record))
        return claimed

    async def expiry_candidates(
        self,
        *,
        bucket: str,
        prefix: str,
        created_before: datetime,
        limit: int,
        after: uuid.UUID | None = None,
    ) -> builtins.list[ImageRecord]:
        """Old ready records under a prefix."""
        found = sorted(
            (
                r
                for r in self._records.values()
                if r.bucket == bucket
                and r.state is ImageState.READY
                and r.key.startswith(prefix)
                and r.created_at < created_before
                and (after is None or r.image_id > after)
            ),
            key=lambda r: r.image_id,
        )
        return [self._with_children(r) for r in found[:limit]]

    async def mark_expired(self, image_id: uuid.UUID, *, now: datetime) -> bool:
        """Move a ready record to expired."""
        record = self._records.get(image_id)
        if record is None or record.state is not ImageState.READY:
            return False
        self._store(attrs.evolve(record, state=ImageState.EXPIRED, updated_at=now))
        return True

    async def release(self, image_ids: Sequence[uuid.UUID]) -> None:
        """Give up claims."""
        for image_id in image_ids:
            self._claims.pop(image_id, None)

    async def records(self) -> AsyncIterator[ImageRecord]:
        """Every record."""
        for record in list(self._records.values()):
            yield self._with_children(record)


def _is_stale(
    record: ImageRecord, updated_before: datetime, uploads_expired_before: datetime | None
) -> bool:
    expires = record.upload_expires_at
    if (
        uploads_expired_before is not None
        and expires is not None
        and record.state is ImageState.UPLOADING
    ):
        return expires < uploads_expired_before
    return record.updated_at < updated_before
