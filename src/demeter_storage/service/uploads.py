"""The upload path of :class:`~demeter_storage.service.image_service.ImageService`.

An upload checks the data, claims the key by writing its record
(``uploading``; a retry takes over an interrupted upload of the same key at
once, see :mod:`demeter_storage.service.ownership`), creates the object (and the
thumbnail), then marks the record ``ready`` with the object's ETag. A failure
while the objects are stored or the record marked ready, cancellation
included, hides the record and deletes what was written at once. Anything else
left half-done (a process that dies between two steps) is an ``uploading``
record that a retry takes over, or ``reconcile`` clears with its objects. The
checkpoint is awaited after each step (tests inject failures there).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import IO

from demeter_storage.domain.errors import ValidationError
from demeter_storage.domain.ids import new_id
from demeter_storage.domain.images import normalise_image_type
from demeter_storage.domain.keys import thumbnail_key
from demeter_storage.domain.objects import validate_content_type, validate_metadata
from demeter_storage.domain.records import ImageKind, ImageRecord, ImageState
from demeter_storage.ports import ImageStore, MetadataRepository, ThumbnailMaker
from demeter_storage.ports.streams import Digest, Payload, PutData
from demeter_storage.service.config import ServiceConfig
from demeter_storage.service.maintenance import Maintenance, owned_keys
from demeter_storage.service.ownership import Claim, LostOwnership, Ownership
from demeter_storage.service.upload_data import CheckedData, DataRejected, check_data


class Uploads:
    """Uploads through the ports.

    Args:
        metadata: the records.
        ownership: claims keys and fences the writes under them.
        maintenance: undoes a failed upload.
        config: limits.
        thumbnails: makes thumbnails of originals; None disables them.
        clock: the current time.
        step: awaited with each step's name once it is done.
    """

    def __init__(
        self,
        *,
        metadata: MetadataRepository,
        ownership: Ownership,
        maintenance: Maintenance,
        config: ServiceConfig,
        thumbnails: ThumbnailMaker | None,
        clock: Callable[[], datetime],
        step: Callable[[str], Awaitable[None]],
    ) -> None:
        self.metadata = metadata
        self.ownership = ownership
        self.maintenance = maintenance
        self.config = config
        self.thumbnails = thumbnails
        self._clock = clock
        self._step = step

    async def upload(
        self,
        *,
        store: ImageStore,
        kind: ImageKind,
        key: str,
        data: PutData,
        declared_type: str | None,
        declared_size: int | None,
        metadata: Mapping[str, str] | None,
        parent_id: uuid.UUID | None,
        idempotency_key: str | None = None,
    ) -> ImageRecord:
        """Check ``data``, claim the key, create the object (and thumbnail), mark it ready.

        Returns the ready record: the one this call made, or, for an
        ``idempotency_key`` used before with the same bytes, the earlier one.

        Raises:
            ValidationError: bad data; or an idempotency key used before for
                other bytes.
        """
        user_metadata = validate_metadata(metadata)
        if declared_type is not None:
            normalise_image_type(validate_content_type(declared_type))
        make_thumbnail = kind is ImageKind.ORIGINAL and self.thumbnails is not None
        checked = await check_data(
            Payload.of(data),
            declared_type,
            limit=self.config.max_upload_bytes,
            declared_size=declared_size,
            # A copy of one-shot data serves the thumbnail (and a second try,
            # should a replaced attempt's object stand in the way).
            keep_copy=make_thumbnail,
        )
        session_id, filename = key.split("/", 1)
        if kind is ImageKind.VISUALIZATION:
            filename = filename.removeprefix("viz_")
        now = self._clock()
        record = ImageRecord(
            image_id=new_id(),
            kind=kind,
            session_id=session_id,
            bucket=store.name,
            key=key,
            filename=filename,
            content_type=checked.content_type,
            size=None,
            sha256=None,
            state=ImageState.UPLOADING,
            created_at=now,
            updated_at=now,
            parent_id=parent_id,
            metadata=user_metadata,
            idempotency_key=idempotency_key,
        )
        try:
            claim = await self.ownership.claim(record)
            if isinstance(claim, ImageRecord):
                return await _replayed(claim, checked)
            await self._step("record_written")
            return await self._store_objects(store, claim, checked, make_thumbnail)
        finally:
            checked.close()

    async def _store_objects(
        self, store: ImageStore, claim: Claim, checked: CheckedData, make_thumbnail: bool
    ) -> ImageRecord:
        record = claim.record
        try:
            if claim.replaced is not None:
                # What the interrupted attempt left (or is still writing) goes first.
                for old_key in dict.fromkeys(owned_keys(claim.replaced) + owned_keys(record)):
                    await self.ownership.clear(store, record, old_key)
            try:
                info = await self.ownership.create(
                    store,
                    record,
                    record.key,
                    checked.payload,
                    content_type=checked.content_type,
                    metadata=record.metadata,
                    again=lambda: _again(checked),
                )
            except DataRejected as rejected:
                raise rejected.error from None
            await self._step("object_written")
            thumb = None
            if make_thumbnail:
                thumb = await self._put_thumbnail(store, record, checked)
                await self._step("thumbnail_written")
            sha256 = info.sha256 or await self._sha256_of(store, record.key)
            ready = await self.metadata.mark_ready(
                record.image_id,
                size=info.size,
                sha256=sha256,
                thumbnail_key=thumb,
                now=self._clock(),
                etag=info.etag,
            )
            if ready is None:
                raise LostOwnership(record)
            await self._step("marked_ready")
            return ready
        except (Exception, asyncio.CancelledError):
            await self.maintenance.undo_upload(record)
            raise

    async def _put_thumbnail(
        self, store: ImageStore, record: ImageRecord, checked: CheckedData
    ) -> str | None:
        assert self.thumbnails is not None
        source = _again(checked)
        if source is None:
            return None
        image = await self.thumbnails.make(source)
        if image is None:
            return None
        key = thumbnail_key(record.session_id, record.filename)
        await self.ownership.create(
            store, record, key, image, content_type="image/jpeg", again=lambda: image
        )
        return key

    async def _sha256_of(self, store: ImageStore, key: str) -> str:
        digest = Digest()
        async for chunk in store.stream(key):
            digest.update(chunk)
        return digest.sha256


def _again(checked: CheckedData) -> bytes | IO[bytes] | None:
    """The upload's data once more, from its start (None if it cannot be read again)."""
    data = checked.payload.in_memory
    if data is not None:
        return data
    file = checked.payload.rewound_file()
    if file is not None:
        return file
    if checked.spool is not None:
        checked.spool.seek(0)
        return checked.spool
    return None


async def _replayed(existing: ImageRecord, checked: CheckedData) -> ImageRecord:
    """The earlier image of a reused idempotency key, if these are its bytes."""
    digest = Digest()
    try:
        async for chunk in checked.payload.chunks():
            digest.update(chunk)
    except DataRejected as rejected:
        raise rejected.error from None
    if (digest.sha256, digest.size) != (existing.sha256, existing.size):
        raise ValidationError(
            f"idempotency key {existing.idempotency_key!r} was used for image "
            f"{existing.image_id} with other bytes; use a new key for a new photo"
        )
    return existing
