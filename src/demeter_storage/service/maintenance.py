"""Keeping records and objects in step: deleting objects, reconcile and audit.

``reconcile`` finishes whatever a crash or an outage interrupted:

* an ``uploading`` record older than ``stale_upload_after`` is an abandoned
  upload: its objects (whichever were written) are deleted, then its row; a
  direct upload is abandoned once its form expired ``direct_upload_grace`` ago
  (whatever its age), and whatever the client posted goes with it;
* a ``deleting`` record older than ``deleting_grace`` is a delete that did not
  finish: its objects are deleted, then its row;
* a ``ready`` record whose object a lifecycle rule removed is marked
  ``expired`` (its thumbnail deleted) or removed with its visualizations,
  as ``expired_records`` says.

Records are claimed atomically before they are worked on, so concurrent
reconcilers (several workers, say) never handle the same row. Audits and the
orphan sweep live in :mod:`demeter_storage.service.audit`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

import attrs

from demeter_storage.domain.errors import ImageAlreadyExists, StorageError
from demeter_storage.domain.keys import staging_key, thumbnail_key
from demeter_storage.domain.lifecycle import LifecycleRule
from demeter_storage.domain.records import ImageKind, ImageRecord, ImageState
from demeter_storage.ports import ImageStore, MetadataRepository, RemovesLeftovers

if TYPE_CHECKING:
    from demeter_storage.service.config import ServiceConfig

logger = logging.getLogger(__name__)

CLAIM_BATCH: Final = 100
LEFTOVERS_AGE: Final = timedelta(hours=1)


@attrs.frozen
class ReconcileReport:
    """What one ``reconcile`` run did.

    Attributes:
        abandoned_uploads: ids of stale uploads whose objects and rows were removed.
        completed_deletes: ids of interrupted deletes that were completed.
        expired_records: ids of records whose objects a lifecycle rule removed
            (marked expired, or removed, as configured).
        failed: ids left for a later run (the store or database failed), with why.
        leftover_files: temporary files of crashed writes removed from local stores.
    """

    abandoned_uploads: tuple[uuid.UUID, ...] = ()
    completed_deletes: tuple[uuid.UUID, ...] = ()
    expired_records: tuple[uuid.UUID, ...] = ()
    failed: tuple[tuple[uuid.UUID, str], ...] = ()
    leftover_files: int = 0

    @property
    def clean(self) -> bool:
        """Whether nothing was left for later."""
        return not self.failed


def owned_keys(record: ImageRecord) -> tuple[str, ...]:
    """Every key a record may own in its bucket: its object and thumbnail.

    For an original whose upload did not finish, the thumbnail key is not yet
    recorded but may have been written: it is derived from the filename; so is
    the landing place of a direct upload.
    """
    keys = list(record.object_keys)
    if record.kind is ImageKind.ORIGINAL and record.state is not ImageState.READY:
        expected = thumbnail_key(record.session_id, record.filename)
        if expected not in keys:
            keys.append(expected)
        if record.upload_expires_at is not None:
            keys.append(staging_key(record.image_id))
    return tuple(keys)


def keys_to_delete(record: ImageRecord) -> tuple[str, ...]:
    """What deleting a record's objects removes: its keys, and a direct upload's landing place.

    A client may post its form again after the upload was confirmed; that copy
    is deleted with the image.
    """
    keys = owned_keys(record)
    if record.upload_expires_at is not None and staging_key(record.image_id) not in keys:
        keys = (*keys, staging_key(record.image_id))
    return keys


async def expiry_rules(stores: Mapping[str, ImageStore]) -> dict[str, list[LifecycleRule]]:
    """The lifecycle rules that expire objects, by bucket, as each store applies them."""
    return {
        bucket: [r for r in (await store.get_lifecycle()).rules if r.expire_after_days]
        for bucket, store in stores.items()
    }


def default_claimant() -> str:
    """A name for this reconciler that no other process shares."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Maintenance:
    """Deletes objects by record, reconciles and audits, through the ports only."""

    def __init__(
        self,
        *,
        stores: Mapping[str, ImageStore],
        metadata: MetadataRepository,
        config: ServiceConfig,
        clock: Callable[[], datetime],
    ) -> None:
        self.stores = dict(stores)
        self.metadata = metadata
        self.config = config
        self._clock = clock

    async def delete_objects(self, records: Iterable[ImageRecord]) -> None:
        """Delete every object the records own, bucket by bucket (idempotent)."""
        by_bucket: dict[str, list[str]] = defaultdict(list)
        for record in records:
            by_bucket[record.bucket].extend(keys_to_delete(record))
        for bucket, keys in by_bucket.items():
            store = self.stores.get(bucket)
            if store is None:
                raise StorageError(
                    f"a record points into bucket {bucket!r}, which this service does not "
                    "manage; configure the same buckets as the app that wrote it"
                )
            await store.delete_many(keys)

    async def undo_upload(self, record: ImageRecord) -> None:
        """Remove what a failed upload wrote, then its row, if the row is still its own.

        The row is hidden (``deleting``) first, atomically and only if still
        ``uploading``: a row that became ready keeps its objects, and no retry
        can take over a row being undone (it waits for the undo). A row removed
        while the upload ran (a delete, ``reconcile``) is written back as
        ``deleting`` to reserve the key while what the upload wrote since is
        deleted; if a retry holds the key already, the objects are its own. If
        the undo fails, the ``deleting`` row stays for :meth:`reconcile`.
        """
        try:
            now = self._clock()
            hidden = await self.metadata.mark_deleting(
                record.image_id, now=now, from_state=ImageState.UPLOADING
            )
            if not hidden:
                if await self.metadata.get(record.image_id) is not None:
                    return  # ready, or being deleted by whoever marked it
                tombstone = attrs.evolve(
                    record,
                    state=ImageState.DELETING,
                    updated_at=now,
                    parent_id=None,
                    idempotency_key=None,
                )
                try:
                    await self.metadata.add(tombstone)
                except ImageAlreadyExists:
                    return  # a retry took the key over: what is there is its own
                hidden = [tombstone]
            await self.delete_objects(hidden)
            await self.metadata.remove([record.image_id])
        except (StorageError, asyncio.CancelledError) as exc:
            logger.warning(
                "could not undo the failed upload of %r (%s); reconcile() will finish it",
                record.key,
                exc,
            )

    async def reconcile(
        self, *, claimant: str | None = None, now: datetime | None = None
    ) -> ReconcileReport:
        """Finish abandoned uploads and interrupted deletes; see the module docstring.

        Args:
            claimant: this reconciler's name (a unique one by default).
            now: the time to judge staleness and expiry against (default: the clock).
        """
        me = claimant or default_claimant()
        now = now or self._clock()
        abandoned, abandoned_failed = await self._finish(
            ImageState.UPLOADING,
            now - self.config.stale_upload_after,
            now,
            me,
            uploads_expired_before=now - self.config.direct_upload_grace,
        )
        deleted, deleted_failed = await self._finish(
            ImageState.DELETING, now - self.config.deleting_grace, now, me
        )
        expired, expired_failed = await self._expire(now)
        leftovers = 0
        for store in self.stores.values():
            if isinstance(store, RemovesLeftovers):
                leftovers += await store.remove_leftovers(LEFTOVERS_AGE)
        report = ReconcileReport(
            abandoned_uploads=tuple(abandoned),
            completed_deletes=tuple(deleted),
            expired_records=tuple(expired),
            failed=tuple(abandoned_failed + deleted_failed + expired_failed),
            leftover_files=leftovers,
        )
        if report.abandoned_uploads or report.completed_deletes or expired or report.failed:
            logger.info(
                "reconcile: %d abandoned uploads removed, %d deletes completed, %d expired "
                "by lifecycle, %d left for later",
                len(report.abandoned_uploads),
                len(report.completed_deletes),
                len(expired),
                len(report.failed),
            )
        return report

    async def _finish(
        self,
        state: ImageState,
        updated_before: datetime,
        now: datetime,
        claimant: str,
        *,
        uploads_expired_before: datetime | None = None,
    ) -> tuple[list[uuid.UUID], list[tuple[uuid.UUID, str]]]:
        done: list[uuid.UUID] = []
        failed: list[tuple[uuid.UUID, str]] = []
        try:
            while True:
                batch = await self.metadata.claim(
                    state=state,
                    updated_before=updated_before,
                    now=now,
                    claimant=claimant,
                    limit=CLAIM_BATCH,
                    claim_timeout=self.config.claim_timeout,
                    uploads_expired_before=uploads_expired_before,
                )
                for record in batch:
                    try:
                        await self.delete_objects([record])
                        await self.metadata.remove([record.image_id])
                    except StorageError as exc:
                        failed.append((record.image_id, str(exc)))
                    else:
                        done.append(record.image_id)
                if len(batch) < CLAIM_BATCH:
                    break
        finally:
            # Failed rows stay claimed during the run (so the loop moves on), then
            # are released for the next run.
            if failed:
                try:
                    await self.metadata.release([image_id for image_id, _ in failed])
                except StorageError as exc:
                    logger.warning("could not release claims (%s); they lapse by themselves", exc)
        return done, failed

    async def _expire(self, now: datetime) -> tuple[list[uuid.UUID], list[tuple[uuid.UUID, str]]]:
        """Handle ready records whose objects a lifecycle rule removed."""
        done: list[uuid.UUID] = []
        failed: list[tuple[uuid.UUID, str]] = []
        for bucket, rules in (await expiry_rules(self.stores)).items():
            store = self.stores[bucket]
            for rule in rules:
                assert rule.expire_after_days is not None
                created_before = now - timedelta(days=rule.expire_after_days)
                after: uuid.UUID | None = None
                while True:
                    batch = await self.metadata.expiry_candidates(
                        bucket=bucket,
                        prefix=rule.prefix,
                        created_before=created_before,
                        limit=CLAIM_BATCH,
                        after=after,
                    )
                    for record in batch:
                        try:
                            if not await store.exists(record.key):
                                await self._forget_expired(record, now)
                                done.append(record.image_id)
                        except StorageError as exc:
                            failed.append((record.image_id, str(exc)))
                    if len(batch) < CLAIM_BATCH:
                        break
                    after = batch[-1].image_id
        return done, failed

    async def _forget_expired(self, record: ImageRecord, now: datetime) -> None:
        if self.config.expired_records == "remove":
            family = await self.metadata.mark_deleting(record.image_id, now=now)
            await self.delete_objects(family)
            await self.metadata.remove([member.image_id for member in family])
            return
        leftovers = [key for key in record.object_keys if key != record.key]
        if leftovers:
            await self.stores[record.bucket].delete_many(leftovers)
        await self.metadata.mark_expired(record.image_id, now=now)
