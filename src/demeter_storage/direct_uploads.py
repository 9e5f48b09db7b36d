"""Direct uploads: the client sends the photo straight to the store, then the app confirms.

``begin`` checks the request exactly like ``upload_original``, writes the
record (``uploading``, with the declared size and the form's expiry) and
returns a presigned POST whose policy pins the key, the content type and 1 to
the declared size in bytes. ``complete`` checks what actually arrived (size,
content type, the image's leading bytes), records its SHA-256, makes the
thumbnail and marks the record ``ready``.

A rejected upload's object is deleted at once. Its record goes too if the
form has expired; while the form is still valid a client could post again, so
the record is marked ``deleting`` (hidden) instead, dated at the form's
expiry, and ``reconcile`` removes it, with anything posted since, once
nothing more can arrive. Abandoned uploads (never completed) are removed by
``reconcile`` once their form expired.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from datetime import timedelta
from typing import IO, TYPE_CHECKING, Final, NoReturn

from demeter_storage.domain.errors import (
    ImageNotFound,
    ObjectNotFound,
    UploadAlreadyCompleted,
    ValidationError,
)
from demeter_storage.domain.ids import new_id
from demeter_storage.domain.images import SNIFF_BYTES, check_image, normalise_image_type
from demeter_storage.domain.keys import original_key, thumbnail_key
from demeter_storage.domain.objects import validate_content_type
from demeter_storage.domain.records import ImageKind, ImageRecord, ImageState
from demeter_storage.domain.schemas import DirectUpload
from demeter_storage.streams import Digest
from demeter_storage.upload_data import SPOOL_IN_MEMORY_BYTES, check_size

if TYPE_CHECKING:
    from demeter_storage.service import ImageService

CLOCK_SKEW: Final = timedelta(minutes=1)
"""How long after a form's expiry the store may still accept it (its clock may lag)."""


class DirectUploads:
    """Begin and complete direct uploads for one :class:`ImageService`."""

    def __init__(self, service: ImageService) -> None:
        self._service = service

    async def begin(
        self, session_id: str, filename: str, content_type: str, size: int
    ) -> DirectUpload:
        """See :meth:`ImageService.begin_direct_upload`."""
        service = self._service
        key = original_key(session_id, filename)
        canonical_type = normalise_image_type(validate_content_type(content_type))
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError(f"size must be an int of bytes, got {type(size).__name__}")
        check_size(size, service.config.max_upload_bytes)
        store = service.originals
        now = service.now()
        expires_in = int(service.config.direct_upload_expiry.total_seconds())
        session, name = key.split("/", 1)
        record = ImageRecord(
            image_id=new_id(),
            kind=ImageKind.ORIGINAL,
            session_id=session,
            bucket=store.name,
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
        await service.metadata.add(record)
        try:
            form = await store.presign_post(
                key, content_type=canonical_type, max_size=size, expires_in=expires_in
            )
        except BaseException:
            await service.metadata.remove([record.image_id])
            raise
        return DirectUpload(
            image_id=record.image_id,
            bucket=store.name,
            key=key,
            url=form.url,
            fields=form.fields,
            expires_at=form.expires_at,
            max_size=size,
        )

    async def complete(self, image_id: uuid.UUID) -> ImageRecord:
        """See :meth:`ImageService.complete_direct_upload`; returns the ready record."""
        service = self._service
        record = await service.metadata.get(image_id)
        if record is None or record.state in (ImageState.DELETING, ImageState.EXPIRED):
            raise ImageNotFound(image_id)
        if record.upload_expires_at is None or record.size is None:
            raise ValidationError(
                f"image {image_id} is not a direct upload (it came through upload_original); "
                "there is nothing to complete"
            )
        if record.state is ImageState.READY:
            raise UploadAlreadyCompleted(image_id)
        grace = service.config.direct_upload_grace
        if service.now() > record.upload_expires_at + grace:
            await self._reject(record, "its upload form expired; begin a new direct upload")
        store = service.originals
        try:
            info = await store.head(record.key)
        except ObjectNotFound:
            raise ValidationError(
                f"nothing has arrived for image {image_id} yet; post the file with the upload "
                "form, then complete the upload (it is removed if the form expires first)"
            ) from None
        if info.size != record.size:
            await self._reject(record, f"{info.size} bytes arrived but {record.size} were declared")
        arrived_type = info.content_type or "unknown"
        if arrived_type.split(";", 1)[0].strip().lower() != record.content_type:
            await self._reject(
                record,
                f"it arrived as {arrived_type!r}, not the declared {record.content_type!r}",
            )
        sha256, copy = await self._read_and_check(record)
        try:
            thumb = await self._thumbnail(record, copy)
        finally:
            if copy is not None:
                copy.close()
        ready = await service.metadata.mark_ready(
            record.image_id, size=info.size, sha256=sha256, thumbnail_key=thumb, now=service.now()
        )
        if ready is None:
            await service.maintenance.undo_upload(record)
            current = await service.metadata.get(image_id)
            if current is not None and current.state is ImageState.READY:
                raise UploadAlreadyCompleted(image_id)  # a concurrent complete won
            raise ImageNotFound(image_id)  # reconcile removed it meanwhile
        return ready

    async def _read_and_check(self, record: ImageRecord) -> tuple[str, IO[bytes] | None]:
        """Hash what arrived, checking its leading bytes; keep a copy for the thumbnail."""
        assert record.size is not None
        service = self._service
        digest = Digest()
        head = b""
        copy: IO[bytes] | None = None
        if service.thumbnails is not None:
            copy = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES)  # noqa: SIM115 - closed by the caller
        try:
            async for chunk in service.originals.stream(record.key):
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
        service = self._service
        if service.thumbnails is None or copy is None:
            return None
        copy.seek(0)
        image = await service.thumbnails.make(copy)
        if image is None:
            return None
        key = thumbnail_key(record.session_id, record.filename)
        await service.originals.put(key, image, content_type="image/jpeg")
        return key

    async def _reject(self, record: ImageRecord, why: str) -> NoReturn:
        """Delete what arrived and the record (later, if the form could still be used)."""
        service = self._service
        now = service.now()
        assert record.upload_expires_at is not None
        if now > record.upload_expires_at + CLOCK_SKEW:
            await service.maintenance.undo_upload(record)
        else:
            # Hidden now; reconcile removes the row, and whatever is posted until the
            # form expires, once the deleting grace after the expiry has passed.
            await service.metadata.mark_deleting(
                record.image_id, now=record.upload_expires_at + CLOCK_SKEW
            )
            await service.maintenance.delete_objects([record])
        raise ValidationError(f"the direct upload of {record.key!r} was rejected: {why}")
