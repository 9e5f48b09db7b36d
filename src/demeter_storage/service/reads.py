"""The read path of :class:`~demeter_storage.service.ImageService`: verified downloads, pages.

Only ready images are visible: a key whose image is being uploaded or deleted
is not found. Whole downloads and streams are checked against the SHA-256
recorded at upload.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from collections.abc import AsyncIterator

from demeter_storage.domain.errors import IntegrityError, ObjectNotFound, ValidationError
from demeter_storage.domain.keys import validate_key, validate_session_id
from demeter_storage.domain.records import ImageRecord, ImageState
from demeter_storage.ports import ImageStore, MetadataRepository
from demeter_storage.ports.streams import Digest
from demeter_storage.service.schemas import ImagePage, ImageResponse


class Reads:
    """Downloads, URLs and pages of ready images, through the ports."""

    def __init__(self, metadata: MetadataRepository) -> None:
        self.metadata = metadata

    async def visible(self, store: ImageStore, key: str) -> ImageRecord | None:
        """The ready record owning ``key`` (None for an object no record knows).

        Raises:
            ObjectNotFound: its image is being uploaded or deleted.
        """
        record = await self.metadata.get_by_key(store.name, key)
        if record is not None and record.state is not ImageState.READY:
            raise ObjectNotFound(key, store.name, detail=f"the image is {record.state.value}")
        return record

    async def download(self, store: ImageStore, s3_key: str) -> bytes:
        """See :meth:`ImageService.download_original`."""
        key = validate_key(s3_key)
        record = await self.visible(store, key)
        data = await store.get(key)
        if record is not None and key == record.key and record.sha256:
            actual = (await asyncio.to_thread(hashlib.sha256, data)).hexdigest()
            _check_digest(record, actual)
        return data

    async def stream(self, store: ImageStore, s3_key: str, chunk_size: int) -> AsyncIterator[bytes]:
        """See :meth:`ImageService.stream_original`."""
        key = validate_key(s3_key)
        record = await self.visible(store, key)
        digest = Digest()
        async for chunk in store.stream(key, chunk_size=chunk_size):
            yield digest.update(chunk)
        if record is not None and key == record.key and record.sha256:
            _check_digest(record, digest.sha256)

    async def url(self, store: ImageStore, s3_key: str, hours: int) -> str:
        """See :meth:`ImageService.generate_presigned_url` (``hours`` checked already)."""
        key = validate_key(s3_key)
        await self.visible(store, key)
        return (await store.presign(key, expires_in=hours * 3600)).url

    async def page(self, session_id: str, limit: int, cursor: str | None) -> ImagePage:
        """See :meth:`ImageService.list_session_images`."""
        session = validate_session_id(session_id)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise ValidationError(f"limit must be an int from 1 to 1000, got {limit!r}")
        after = _decode_cursor(cursor)
        records = await self.metadata.list_session(session, limit=limit + 1, after=after)
        page = records[:limit]
        items = tuple([ImageResponse.from_record(r) for r in page])
        more = len(records) > limit
        return ImagePage(items=items, next_cursor=_encode_cursor(page[-1]) if more else None)


def _check_digest(record: ImageRecord, actual: str) -> None:
    if actual != record.sha256:
        raise IntegrityError(
            f"{record.key!r} in {record.bucket!r} does not match its recorded SHA-256 "
            f"({actual} != {record.sha256}); the stored object is damaged, restore it"
        )


def _encode_cursor(record: ImageRecord) -> str:
    raw = f"{record.bucket}\n{record.key}".encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_cursor(cursor: str | None) -> tuple[str, str] | None:
    if cursor is None:
        return None
    try:
        bucket, key = base64.urlsafe_b64decode(cursor.encode()).decode().split("\n", 1)
    except (ValueError, binascii.Error, UnicodeError, AttributeError):
        raise ValidationError("invalid cursor; pass the next_cursor of the previous page") from None
    return bucket, key
