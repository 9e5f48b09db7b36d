"""The upload path of :class:`~demeter_storage.service.ImageService`.

An upload checks the data, writes the record (``uploading``), puts the object
(and the thumbnail), then marks the record ``ready``. A failure while the
objects are stored or the record marked ready, cancellation included, deletes
the objects and the record at once. Anything else left half-done (a process
that dies between two steps, a record written for a caller cancelled
meanwhile) is an ``uploading`` record that ``reconcile`` clears with its
objects. The checkpoint is awaited after each step (tests inject failures
there).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import IO, TYPE_CHECKING

from demeter_storage.domain.errors import StorageError
from demeter_storage.domain.ids import new_id
from demeter_storage.domain.images import normalise_image_type
from demeter_storage.domain.keys import thumbnail_key
from demeter_storage.domain.objects import validate_content_type, validate_metadata
from demeter_storage.domain.records import ImageKind, ImageRecord, ImageState
from demeter_storage.ports import ImageStore
from demeter_storage.streams import Digest, Payload, PutData
from demeter_storage.upload_data import CheckedData, DataRejected, check_data

if TYPE_CHECKING:
    from demeter_storage.service import ImageService


class Uploads:
    """Uploads for one :class:`ImageService`.

    Args:
        service: the service whose stores, records, settings and thumbnails it uses.
        step: awaited with each step's name once it is done.
    """

    def __init__(self, service: ImageService, step: Callable[[str], Awaitable[None]]) -> None:
        self._service = service
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
    ) -> ImageRecord:
        """Check ``data``, write the record, the object (and thumbnail), mark it ready.

        Returns the ready record. A failure while storing the objects or marking
        the record deletes what was written; see the module's docstring for the rest.
        """
        service = self._service
        user_metadata = validate_metadata(metadata)
        if declared_type is not None:
            normalise_image_type(validate_content_type(declared_type))
        make_thumbnail = kind is ImageKind.ORIGINAL and service.thumbnails is not None
        checked = await check_data(
            Payload.of(data),
            declared_type,
            limit=service.config.max_upload_bytes,
            declared_size=declared_size,
            keep_copy=make_thumbnail,
        )
        session_id, filename = key.split("/", 1)
        if kind is ImageKind.VISUALIZATION:
            filename = filename.removeprefix("viz_")
        now = service.now()
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
        )
        try:
            await service.metadata.add(record)
            await self._step("record_written")
            ready = await self._store_objects(store, record, checked, make_thumbnail)
        finally:
            checked.close()
        return ready

    async def _store_objects(
        self, store: ImageStore, record: ImageRecord, checked: CheckedData, make_thumbnail: bool
    ) -> ImageRecord:
        service = self._service
        try:
            try:
                info = await store.put(
                    record.key,
                    checked.payload,
                    content_type=checked.content_type,
                    metadata=record.metadata,
                )
            except DataRejected as rejected:
                raise rejected.error from None
            await self._step("object_written")
            thumb = None
            if make_thumbnail:
                thumb = await self._put_thumbnail(store, record, checked)
                await self._step("thumbnail_written")
            sha256 = info.sha256 or await self._sha256_of(store, record.key)
            ready = await service.metadata.mark_ready(
                record.image_id,
                size=info.size,
                sha256=sha256,
                thumbnail_key=thumb,
                now=service.now(),
            )
            if ready is None:
                raise StorageError(
                    f"the upload of {record.key!r} was deleted while it ran; upload it again"
                )
            await self._step("marked_ready")
            return ready
        except (Exception, asyncio.CancelledError):
            await service.maintenance.undo_upload(record)
            raise

    async def _put_thumbnail(
        self, store: ImageStore, record: ImageRecord, checked: CheckedData
    ) -> str | None:
        thumbnails = self._service.thumbnails
        assert thumbnails is not None
        source: bytes | IO[bytes] | None = checked.payload.in_memory
        if source is None:
            source = checked.payload.rewound_file()
        if source is None and checked.spool is not None:
            checked.spool.seek(0)
            source = checked.spool
        if source is None:
            return None
        image = await thumbnails.make(source)
        if image is None:
            return None
        key = thumbnail_key(record.session_id, record.filename)
        await store.put(key, image, content_type="image/jpeg")
        return key

    async def _sha256_of(self, store: ImageStore, key: str) -> str:
        digest = Digest()
        async for chunk in store.stream(key):
            digest.update(chunk)
        return digest.sha256
