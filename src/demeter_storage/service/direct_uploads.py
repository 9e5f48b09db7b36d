"""Direct uploads: the client sends the photo straight to the store, then the app confirms.

``begin`` checks the request exactly like ``upload_original`` and claims the
key by writing the record (``uploading``, with the declared size and the
form's expiry; a retry takes over an interrupted upload of the same name). The
form it returns posts to the upload's own landing place,
``_staging/{image_id}``, never to the image's key: its policy pins that key,
the content type and 1 to the declared size in bytes. ``complete`` copies what
arrived to the image's key (only this step writes it, create-only), checks the
copy (size, content type, the image's leading bytes), records its SHA-256 and
ETag, makes the thumbnail, marks the record ``ready`` and deletes the landing
copy. A form posted again, before or after, only ever reaches the landing
place: a confirmed image's bytes never change.

A rejected upload's objects are deleted at once. Its record goes too if the
form has expired; while the form is still valid a client could post again, so
the record is marked ``deleting`` (hidden) instead, dated at the form's
expiry, and ``reconcile`` removes it, with anything posted since, once
nothing more can arrive. Abandoned uploads (never completed) are removed by
``reconcile`` once their form expired.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import IO, Final, NoReturn

from demeter_storage.domain.errors import (
    ImageNotFound,
    ObjectNotFound,
    StorageError,
    UploadAlreadyCompleted,
    ValidationError,
)
from demeter_storage.domain.ids import new_id
from demeter_storage.domain.images import SNIFF_BYTES, check_image, normalise_image_type
from demeter_storage.domain.keys import original_key, staging_key, thumbnail_key
from demeter_storage.domain.objects import ObjectInfo, validate_content_type
from demeter_storage.domain.records import ImageKind, ImageRecord, ImageState
from demeter_storage.ports import ImageStore, MetadataRepository, ThumbnailMaker
from demeter_storage.ports.streams import Digest
from demeter_storage.service.config import ServiceConfig
from demeter_storage.service.maintenance import Maintenance, owned_keys
from demeter_storage.service.ownership import Claim, Ownership
from demeter_storage.service.schemas import DirectUpload
from demeter_storage.service.upload_data import SPOOL_IN_MEMORY_BYTES, check_size

logger = logging.getLogger(__name__)

CLOCK_SKEW: Final = timedelta(minutes=1)
"""How long after a form's expiry the store may still accept it (its clock may lag)."""


class DirectUploads:
    """Begin and complete direct uploads into the originals' store.

    Args:
        store: the originals' store (the forms post to it).
        metadata: the records.
        ownership: claims keys and fences the writes under them.
        maintenance: deletes what a rejected upload left.
        config: limits and the forms' lifetime.
        thumbnails: makes thumbnails; None disables them.
        clock: the current time.
    """

    def __init__(
        self,
        *,
        store: ImageStore,
        metadata: MetadataRepository,
        ownership: Ownership,
        maintenance: Maintenance,
        config: ServiceConfig,
        thumbnails: ThumbnailMaker | None,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.metadata = metadata
        self.ownership = ownership
        self.maintenance = maintenance
        self.config = config
        self.thumbnails = thumbnails
        self._clock = clock

    async def begin(
        self, session_id: str, filename: str, content_type: str, size: int
    ) -> DirectUpload:
        """See :meth:`ImageService.begin_direct_upload`."""
        key = original_key(session_id, filename)
        canonical_type = normalise_image_type(validate_content_type(content_type))
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError(f"size must be an int of bytes, got {type(size).__name__}")
        check_size(size, self.config.max_upload_bytes)
        now = self._clock()
        expires_in = int(self.config.direct_upload_expiry.total_seconds())
        session, name = key.split("/", 1)
        record = ImageRecord(
            image_id=new_id(),
            kind=ImageKind.ORIGINAL,
            session_id=session,
            bucket=self.store.name,
            key=key,
            filename=name,
            content_type=canonical_type,
            size=size,  # declared; replaced by the real size once complete
            sha256=None,
            state=ImageState.UPLOADING,
            created_at=now,
            updated_at=now,
            upload_expires_at=now + timedelta(seconds=expires_in),
        )
        claim = await self.ownership.claim(record)
        assert isinstance(claim, Claim)  # no idempotency key: never an earlier image
        try:
            if claim.replaced is not None:
                for old_key in dict.fromkeys(owned_keys(claim.replaced) + owned_keys(record)):
                    await self.ownership.clear(self.store, record, old_key)
            form = await self.store.presign_post(
                staging_key(record.image_id),
                content_type=canonical_type,
                max_size=size,
                expires_in=expires_in,
            )
        except BaseException:
            await self.metadata.remove([record.image_id])
            raise
        return DirectUpload(
            image_id=record.image_id,
            bucket=self.store.name,
            key=key,
            url=form.url,
            fields=form.fields,
            expires_at=form.expires_at,
            max_size=size,
        )

    async def complete(self, image_id: uuid.UUID) -> ImageRecord:
        """See :meth:`ImageService.complete_direct_upload`; returns the ready record."""
        record = await self.metadata.get(image_id)
        if record is None or record.state in (ImageState.DELETING, ImageState.EXPIRED):
            raise ImageNotFound(image_id)
        if record.upload_expires_at is None or record.size is None:
            raise ValidationError(
                f"image {image_id} is not a direct upload (it came through upload_original); "
                "there is nothing to complete"
            )
        if record.state is ImageState.READY:
            raise UploadAlreadyCompleted(image_id)
        if self._clock() > record.upload_expires_at + self.config.direct_upload_grace:
            await self._reject(record, "its upload form expired; begin a new direct upload")
        landed = staging_key(image_id)
        try:
            arrived = await self.store.head(landed)
        except ObjectNotFound:
            raise ValidationError(
                f"nothing has arrived for image {image_id} yet; post the file with the upload "
                "form, then complete the upload (it is removed if the form expires first)"
            ) from None
        if arrived.size != record.size:
            await self._reject(
                record, f"{arrived.size} bytes arrived but {record.size} were declared"
            )
        await self._check_type(record, arrived)
        promoted = await self._promote(record, landed)
        # From here on only the image's own copy is read: a form posted again
        # changes the landing place, never what is checked and recorded.
        await self._check_type(record, promoted)
        sha256, copy = await self._read_and_check(record)
        try:
            thumb = await self._thumbnail(record, copy)
        finally:
            if copy is not None:
                copy.close()
        ready = await self.metadata.mark_ready(
            record.image_id,
            size=record.size,
            sha256=sha256,
            thumbnail_key=thumb,
            now=self._clock(),
            etag=promoted.etag,
        )
        if ready is None:
            await self.maintenance.undo_upload(record)
            current = await self.metadata.get(image_id)
            if current is not None and current.state is ImageState.READY:
                raise UploadAlreadyCompleted(image_id)  # a concurrent complete won
            raise ImageNotFound(image_id)  # reconcile or a retry removed it meanwhile
        try:
            await self.store.delete(landed)
        except StorageError as exc:  # only a copy of a confirmed image: the orphan sweep takes it
            logger.warning("could not delete the landing copy %r (%s)", landed, exc)
        return ready

    async def _check_type(self, record: ImageRecord, info: ObjectInfo) -> None:
        """Reject an object stored with another content type than the declared one."""
        arrived_type = info.content_type or "unknown"
        if arrived_type.split(";", 1)[0].strip().lower() != record.content_type:
            await self._reject(
                record, f"it arrived as {arrived_type!r}, not the declared {record.content_type!r}"
            )

    async def _promote(self, record: ImageRecord, landed: str) -> ObjectInfo:
        """Copy the landing place to the image's key (create-only, fenced by the record)."""
        try:
            return await self.ownership.copy(self.store, record, landed, record.key)
        except ObjectNotFound:
            raise ValidationError(
                f"what arrived for image {record.image_id} was removed meanwhile; post the "
                "file again, then complete the upload"
            ) from None

    async def _read_and_check(self, record: ImageRecord) -> tuple[str, IO[bytes] | None]:
        """Hash the image's copy, checking its leading bytes; keep a copy for the thumbnail."""
        assert record.size is not None
        digest = Digest()
        head = b""
        copy: IO[bytes] | None = None
        if self.thumbnails is not None:
            copy = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES)  # noqa: SIM115 - closed by the caller
        try:
            async for chunk in self.store.stream(record.key):
                if len(head) < SNIFF_BYTES:
                    head += chunk[: SNIFF_BYTES - len(head)]
                    if len(head) >= SNIFF_BYTES:
                        check_image(head, record.content_type)
                digest.update(chunk)
                if copy is not None:
                    await asyncio.to_thread(copy.write, chunk)
            if len(head) < SNIFF_BYTES:
                check_image(head, record.content_type)
        except ValidationError as exc:
            if copy is not None:
                copy.close()
            await self._reject(record, str(exc))
        except BaseException:
            if copy is not None:
                copy.close()
            raise
        if digest.size != record.size:
            if copy is not None:
                copy.close()
            await self._reject(record, f"{digest.size} bytes arrived, {record.size} declared")
        return digest.sha256, copy

    async def _thumbnail(self, record: ImageRecord, copy: IO[bytes] | None) -> str | None:
        if self.thumbnails is None or copy is None:
            return None
        copy.seek(0)
        image = await self.thumbnails.make(copy)
        if image is None:
            return None
        key = thumbnail_key(record.session_id, record.filename)
        await self.ownership.create(
            self.store, record, key, image, content_type="image/jpeg", again=lambda: image
        )
        return key

    async def _reject(self, record: ImageRecord, why: str) -> NoReturn:
        """Delete what arrived and the record (later, if the form could still be used)."""
        now = self._clock()
        assert record.upload_expires_at is not None
        if now > record.upload_expires_at + CLOCK_SKEW:
            await self.maintenance.undo_upload(record)
        else:
            # Hidden now; reconcile removes the row, and whatever is posted until the
            # form expires, once the deleting grace after the expiry has passed.
            hidden = await self.metadata.mark_deleting(
                record.image_id,
                now=record.upload_expires_at + CLOCK_SKEW,
                from_state=ImageState.UPLOADING,
            )
            if hidden:
                await self.maintenance.delete_objects(hidden)
        raise ValidationError(f"the direct upload of {record.key!r} was rejected: {why}")
