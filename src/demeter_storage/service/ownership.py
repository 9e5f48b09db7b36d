"""Who may write an image's keys: claiming them for an upload, and writes fenced by the claim.

The record of an image owns its keys. An upload claims them by writing its
record (``uploading``); a retry of an interrupted upload takes that record over
at once instead of waiting for ``reconcile``. The attempt it replaced may still
be running, so every write under the keys is fenced: objects are only ever
created (``if_absent``), and whatever stands in the way is deleted only by the
record's current owner, and only in the version it looked at (``if_match``).
A late write of a replaced attempt therefore either fails or is cleared before
the new owner confirms, and a ready image's bytes never change.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import IO, TYPE_CHECKING, Final

import attrs

from demeter_storage.domain.errors import (
    ImageAlreadyExists,
    ObjectChanged,
    ObjectExists,
    ObjectNotFound,
    StorageError,
    StorageUnavailable,
)
from demeter_storage.domain.objects import ObjectInfo
from demeter_storage.domain.records import ImageRecord, ImageState
from demeter_storage.ports import ImageStore, MetadataRepository
from demeter_storage.ports.streams import Digest, Payload, PutData

if TYPE_CHECKING:
    from demeter_storage.service.config import ServiceConfig

CLAIM_ATTEMPTS: Final = 8
CLEAR_ATTEMPTS: Final = 4
FIRST_WAIT: Final = 0.02
"""Seconds before looking again at a key whose record is being removed (it doubles)."""


class LostOwnership(StorageError):
    """The upload's record was taken over by a retry, or removed, while it ran."""

    def __init__(self, record: ImageRecord) -> None:
        self.image_id = record.image_id
        super().__init__(
            f"the upload of {record.key!r} was deleted while it ran (or replaced by a newer "
            "attempt); nothing of it was kept"
        )


@attrs.frozen
class Claim:
    """An upload's record, written; and the interrupted upload it replaced, if any."""

    record: ImageRecord
    replaced: ImageRecord | None = None


class Ownership:
    """Claims of keys by records, and the fenced writes under them.

    Args:
        metadata: the records.
        config: the claim timeout of reconcilers.
        clock: the current time.
        sleep: waits between looks at a key whose record is being removed.
    """

    def __init__(
        self,
        *,
        metadata: MetadataRepository,
        config: ServiceConfig,
        clock: Callable[[], datetime],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.metadata = metadata
        self.config = config
        self._clock = clock
        self._sleep = sleep

    async def claim(self, record: ImageRecord) -> Claim | ImageRecord:
        """Write ``record`` (``uploading``), taking over an interrupted upload of its key.

        Returns:
            The claim; or, when a ready image already holds ``record``'s
            idempotency key, that image's record (the caller compares the bytes).

        Raises:
            ImageAlreadyExists: a ready or expired image holds the key.
            StorageUnavailable: the key's previous record is still being removed.
        """
        wait = FIRST_WAIT
        for _ in range(CLAIM_ATTEMPTS):
            try:
                await self.metadata.add(record)
            except ImageAlreadyExists:
                holder = await self._holder(record)
            else:
                return Claim(record)
            if holder is None:
                continue  # removed meanwhile: the key is free again
            if holder.bucket != record.bucket:  # an idempotency key reused across buckets
                raise ImageAlreadyExists(holder.bucket, holder.key, holder.image_id)
            if holder.state is ImageState.READY:
                if record.idempotency_key and holder.idempotency_key == record.idempotency_key:
                    return holder
                raise ImageAlreadyExists(record.bucket, holder.key, holder.image_id)
            if holder.state is ImageState.EXPIRED:
                raise ImageAlreadyExists(record.bucket, holder.key, holder.image_id)
            now = self._clock()
            if holder.state in (ImageState.UPLOADING, ImageState.DELETING) and (
                await self.metadata.take_over(
                    holder.image_id,
                    record,
                    now=now,
                    claim_timeout=self.config.claim_timeout,
                    # An undo or delete that stopped (the store was down) is
                    # finished by the retry, as reconcile would.
                    deleting_before=now - self.config.deleting_grace,
                )
            ):
                return Claim(record, replaced=holder)
            # Being removed right now (a failed upload's undo, a delete) or held
            # by a reconciler: that takes moments; then the key is free.
            await self._sleep(wait)
            wait *= 2
        raise StorageUnavailable(
            f"the previous image at {record.key!r} is still being removed; retry in a moment",
            retry_after=1.0,
        )

    async def _holder(self, record: ImageRecord) -> ImageRecord | None:
        holder = await self.metadata.get_by_key(record.bucket, record.key)
        if holder is None and record.idempotency_key is not None:
            holder = await self.metadata.get_by_idempotency_key(
                record.session_id, record.idempotency_key
            )
        return holder

    async def owns(self, record: ImageRecord) -> bool:
        """Whether ``record`` is still in the repository, ``uploading`` (not taken over)."""
        current = await self.metadata.get(record.image_id)
        return current is not None and current.state is ImageState.UPLOADING

    async def clear(self, store: ImageStore, record: ImageRecord, key: str) -> None:
        """Delete what is stored under ``key``, while ``record`` owns it, version by version.

        Raises:
            LostOwnership: ``record`` no longer owns its keys (nothing was deleted).
        """
        for _ in range(CLEAR_ATTEMPTS):
            try:
                found = await store.head(key)
            except ObjectNotFound:
                return
            if not await self.owns(record):
                raise LostOwnership(record)
            try:
                if found.etag is None:  # a store without versions: nothing better to do
                    await store.delete(key)
                else:
                    await store.delete(key, if_match=found.etag)
            except ObjectChanged:
                continue  # written again meanwhile: look again
            return
        raise StorageUnavailable(
            f"{key!r} in {store.name!r} kept being rewritten while it was cleared; retry later"
        )

    async def create(
        self,
        store: ImageStore,
        record: ImageRecord,
        key: str,
        data: PutData,
        *,
        content_type: str,
        metadata: Mapping[str, str] | None = None,
        again: Callable[[], bytes | IO[bytes] | None] = lambda: None,
    ) -> ObjectInfo:
        """Create ``key`` for ``record``; never replace an object someone else stored.

        An object already there (a replaced attempt's, a retried request's own)
        is kept if it holds the same bytes, else cleared and ``again()`` (the
        same data once more, or None if it cannot be read again) is stored.

        Raises:
            LostOwnership: ``record`` lost its keys meanwhile.
            StorageUnavailable: another writer got in the way and the data
                cannot be sent again (retry the upload).
        """
        try:
            return await store.put(
                key, data, content_type=content_type, metadata=metadata, if_absent=True
            )
        except ObjectExists:
            pass
        replay = again()
        ours = None if replay is None else await sha256_of(replay)
        try:
            found = await store.head(key)
        except ObjectNotFound:
            found = None
        if found is not None and ours is not None and found.sha256 == ours:
            return found  # our own bytes: an earlier attempt of this very request landed
        await self.clear(store, record, key)
        if replay is None:
            raise StorageUnavailable(
                f"an earlier attempt was writing {key!r} at the same moment; upload again",
                retry_after=0.0,
            )
        try:
            return await store.put(
                key, replay, content_type=content_type, metadata=metadata, if_absent=True
            )
        except ObjectExists:
            raise StorageUnavailable(
                f"another attempt keeps writing {key!r}; upload again", retry_after=1.0
            ) from None

    async def copy(
        self, store: ImageStore, record: ImageRecord, source: str, target: str
    ) -> ObjectInfo:
        """Copy ``source`` to ``target`` for ``record``; never replace what someone else stored.

        An object already at ``target`` is kept if it holds the same bytes
        (a retried request's own copy), else cleared before copying again.

        Raises:
            ObjectNotFound: nothing is stored under ``source``.
            LostOwnership: ``record`` lost its keys meanwhile.
            StorageUnavailable: another writer kept getting in the way.
        """
        try:
            return await store.copy(source, target, if_absent=True)
        except ObjectExists:
            pass
        wanted = await store.head(source)
        try:
            found = await store.head(target)
        except ObjectNotFound:
            found = None
        if (
            found is not None
            and wanted.sha256 is not None
            and (found.sha256, found.size) == (wanted.sha256, wanted.size)
        ):
            return found
        await self.clear(store, record, target)
        try:
            return await store.copy(source, target, if_absent=True)
        except ObjectExists:
            raise StorageUnavailable(
                f"another attempt keeps writing {target!r}; complete the upload again",
                retry_after=1.0,
            ) from None


async def sha256_of(source: bytes | IO[bytes]) -> str:
    """The SHA-256 of bytes or of a seekable file from its current position (restored after)."""
    if isinstance(source, bytes | bytearray):
        return await asyncio.to_thread(lambda: hashlib.sha256(source).hexdigest())
    start = source.tell()
    digest = Digest()
    try:
        async for chunk in Payload.of(source).chunks():
            digest.update(chunk)
    finally:
        source.seek(start)
    return digest.sha256
