"""Comparing records with objects, and sweeping the objects no record owns.

``audit`` only reads. It takes the records first, then each bucket's listing,
and looks again at every disagreement before reporting it: an upload that
started after the records were read, or a delete that finished before the
listing, is in flight, not an orphan or a missing object. A ready image whose
object no longer matches its record (size, or the ETag recorded when it
became ready) is reported as damaged.

``sweep_orphans`` deletes objects without a record once they are older than a
grace period: each one's key is first reserved by writing a ``deleting``
record for it (so no upload can claim the key meanwhile; a crash leaves a row
that ``reconcile`` finishes), its owner and age are checked again, and only
the version seen is deleted.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Literal

import attrs

from demeter_storage.domain.errors import (
    ImageAlreadyExists,
    ObjectChanged,
    ObjectNotFound,
    StorageError,
)
from demeter_storage.domain.ids import new_id
from demeter_storage.domain.keys import (
    STAGING_SESSION,
    THUMBNAIL_PREFIX,
    is_staging_key,
)
from demeter_storage.domain.lifecycle import LifecycleRule
from demeter_storage.domain.objects import ObjectInfo, same_etag
from demeter_storage.domain.records import ImageKind, ImageRecord, ImageState
from demeter_storage.ports import ImageStore, MetadataRepository
from demeter_storage.service.maintenance import expiry_rules, owned_keys


@attrs.frozen
class MissingObject:
    """A ready record whose object is gone.

    Attributes:
        reason: ``"lifecycle"`` when an expiry rule of the bucket explains it
            (``reconcile`` will handle the record), else ``"unknown"``.
    """

    image_id: uuid.UUID
    bucket: str
    key: str
    reason: Literal["lifecycle", "unknown"] = "unknown"


@attrs.frozen
class DamagedObject:
    """A ready image whose stored object is not the one its record describes.

    Attributes:
        problem: what differs (size or ETag), with both values.
    """

    image_id: uuid.UUID
    bucket: str
    key: str
    problem: str


@attrs.frozen
class AuditReport:
    """Where records and objects disagree.

    Attributes:
        orphan_objects: ``(bucket, key)`` of objects no record knows.
        missing_objects: objects that ready records point at but that are gone.
        uploading: records of uploads in progress (or abandoned, until reconcile).
        deleting: records of deletes in progress (or interrupted, until reconcile).
        expired: tombstones of images a lifecycle rule removed.
        damaged_objects: ready images whose object differs from their record.
    """

    orphan_objects: tuple[tuple[str, str], ...]
    missing_objects: tuple[MissingObject, ...]
    uploading: int
    deleting: int
    expired: int = 0
    damaged_objects: tuple[DamagedObject, ...] = ()

    @property
    def consistent(self) -> bool:
        """Whether every object has a record and every ready record its intact objects."""
        return not (self.orphan_objects or self.missing_objects or self.damaged_objects)


@attrs.frozen
class OrphanSweep:
    """What one ``sweep_orphans`` did (or, in a dry run, would do).

    Attributes:
        removed: ``(bucket, key)`` of the orphans deleted (or that would be).
        kept: ``(bucket, key, why)`` of orphans left alone: younger than the
            grace period, claimed by an upload meanwhile, or rewritten.
        dry_run: whether nothing was deleted.
    """

    removed: tuple[tuple[str, str], ...]
    kept: tuple[tuple[str, str, str], ...]
    dry_run: bool


class Audits:
    """Audits and orphan sweeps over a service's stores, through the ports only."""

    def __init__(
        self,
        *,
        stores: Mapping[str, ImageStore],
        metadata: MetadataRepository,
        clock: Callable[[], datetime],
    ) -> None:
        self.stores = dict(stores)
        self.metadata = metadata
        self._clock = clock

    async def audit(self) -> AuditReport:
        """Compare the records with the objects; report only what a second look confirms."""
        expected: dict[str, dict[str, ImageRecord]] = defaultdict(dict)
        counts = dict.fromkeys(ImageState, 0)
        async for record in self.metadata.records():
            counts[record.state] += 1
            if record.state is not ImageState.EXPIRED:
                for key in owned_keys(record):
                    expected[record.bucket][key] = record
        orphans: list[tuple[str, str]] = []
        missing: list[MissingObject] = []
        damaged: list[DamagedObject] = []
        rules = await expiry_rules(self.stores)
        for bucket, store in self.stores.items():
            present = {info.key: info async for info in store.list()}
            for key, info in present.items():
                holder = expected[bucket].get(key)
                if holder is None:
                    if await self._unowned(store, key):
                        orphans.append((bucket, key))
                elif holder.state is ImageState.READY and key == holder.key:
                    problem = _difference(holder, info)
                    if problem and await self._still_damaged(store, holder):
                        damaged.append(DamagedObject(holder.image_id, bucket, key, problem))
            for key, record in expected[bucket].items():
                if (
                    record.state is ImageState.READY
                    and key in record.object_keys
                    and key not in present
                    and await self._still_missing(store, record, key)
                ):
                    lifecycle = _expired_by(record, rules.get(bucket, []), self._clock())
                    missing.append(
                        MissingObject(
                            record.image_id, bucket, key, "lifecycle" if lifecycle else "unknown"
                        )
                    )
        return AuditReport(
            orphan_objects=tuple(sorted(orphans)),
            missing_objects=tuple(sorted(missing, key=lambda m: (m.bucket, m.key))),
            uploading=counts[ImageState.UPLOADING],
            deleting=counts[ImageState.DELETING],
            expired=counts[ImageState.EXPIRED],
            damaged_objects=tuple(sorted(damaged, key=lambda d: (d.bucket, d.key))),
        )

    async def _owner(
        self, bucket: str, key: str, *, besides: uuid.UUID | None = None
    ) -> ImageRecord | None:
        """The record that owns ``key`` now (other than ``besides``), in any state."""
        owner = await self.metadata.get_by_key(bucket, key)
        if owner is not None and owner.image_id != besides:
            return owner
        # Keys an unfinished upload owns without their own column: its
        # thumbnail (derived from its filename) and a direct upload's landing place.
        session, _, name = key.partition("/")
        if is_staging_key(key):
            try:
                image_id = uuid.UUID(name)
            except ValueError:
                return None
            owner = await self.metadata.get(image_id)
        elif name.startswith(THUMBNAIL_PREFIX) and name.endswith(".jpg"):
            original = f"{session}/{name.removeprefix(THUMBNAIL_PREFIX).removesuffix('.jpg')}"
            owner = await self.metadata.get_by_key(bucket, original)
        else:
            return None
        if owner is not None and owner.image_id != besides and key in owned_keys(owner):
            return owner
        return None

    async def _unowned(self, store: ImageStore, key: str) -> bool:
        """Whether ``key`` is still stored and still owned by no record (a second look)."""
        if await self._owner(store.name, key) is not None:
            return False  # an upload that began after the records were read
        return await store.exists(key)

    async def _still_missing(self, store: ImageStore, record: ImageRecord, key: str) -> bool:
        current = await self.metadata.get(record.image_id)
        if current is None or current.state is not ImageState.READY:
            return False  # deleted (or expiring) after the records were read
        return not await store.exists(key)

    async def _still_damaged(self, store: ImageStore, record: ImageRecord) -> bool:
        current = await self.metadata.get(record.image_id)
        if current is None or current.state is not ImageState.READY:
            return False
        try:
            info = await store.head(current.key)
        except ObjectNotFound:
            return False  # reported as missing instead, if it stays gone
        return _difference(current, info) is not None

    async def sweep_orphans(self, *, older_than: timedelta, dry_run: bool) -> OrphanSweep:
        """Delete the objects no record owns that are older than ``older_than``.

        Args:
            older_than: the grace period; younger objects may belong to an
                upload that has only just begun.
            dry_run: only report what would be deleted.
        """
        cutoff = self._clock() - older_than
        removed: list[tuple[str, str]] = []
        kept: list[tuple[str, str, str]] = []
        for bucket, store in self.stores.items():
            async for info in store.list():
                if await self._owner(bucket, info.key) is not None:
                    continue
                if info.last_modified is not None and info.last_modified > cutoff:
                    kept.append((bucket, info.key, "younger than the grace period"))
                    continue
                if dry_run:
                    removed.append((bucket, info.key))
                    continue
                why = await self._remove_orphan(store, info, cutoff)
                if why is None:
                    removed.append((bucket, info.key))
                else:
                    kept.append((bucket, info.key, why))
        return OrphanSweep(removed=tuple(removed), kept=tuple(kept), dry_run=dry_run)

    async def _remove_orphan(
        self, store: ImageStore, info: ObjectInfo, cutoff: datetime
    ) -> str | None:
        """Delete one orphan under a reservation of its key; None, or why it was kept."""
        now = self._clock()
        session, _, name = info.key.partition("/")
        reservation = ImageRecord(
            image_id=new_id(),
            # A visualization owns no derived keys: deleting it touches this key only.
            kind=ImageKind.VISUALIZATION,
            session_id=session[:64] or STAGING_SESSION,
            bucket=store.name,
            key=info.key,
            filename=name.rsplit("/", 1)[-1][:200] or "orphan",
            content_type=info.content_type or "application/octet-stream",
            size=None,
            sha256=None,
            state=ImageState.DELETING,
            created_at=now,
            updated_at=now,
        )
        try:
            await self.metadata.add(reservation)
        except ImageAlreadyExists:
            return "an upload claimed the key meanwhile"
        try:
            if await self._owner(store.name, info.key, besides=reservation.image_id):
                return "an upload claimed the key meanwhile"
            try:
                current = await store.head(info.key)
            except ObjectNotFound:
                return None
            if current.last_modified is not None and current.last_modified > cutoff:
                return "rewritten since it was listed"
            try:
                if current.etag is None:
                    await store.delete(info.key)
                else:
                    await store.delete(info.key, if_match=current.etag)
            except ObjectChanged:
                return "rewritten since it was listed"
            except StorageError as exc:
                return f"could not delete it ({exc})"
            return None
        finally:
            # Should this fail, the row is a delete in progress: reconcile deletes
            # the object (if it is still there), then the row.
            with contextlib.suppress(StorageError):
                await self.metadata.remove([reservation.image_id])


def _difference(record: ImageRecord, info: ObjectInfo) -> str | None:
    """What differs between a ready record and its stored object, or None."""
    if record.size is not None and info.size != record.size:
        return f"it holds {info.size} bytes, its record {record.size}"
    if record.etag is not None and info.etag is not None and not same_etag(info.etag, record.etag):
        return f"its ETag is {info.etag}, its record's {record.etag}"
    return None


def _expired_by(record: ImageRecord, rules: list[LifecycleRule], now: datetime) -> bool:
    return any(
        rule.expire_after_days is not None
        and rule.matches(record.key)
        and record.created_at <= now - timedelta(days=rule.expire_after_days)
        for rule in rules
    )
