"""Rows of the image table and the two statements of the upload path, built once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import sqlalchemy as sa

from demeter_storage.adapters.sql.schema import images_table as images
from demeter_storage.domain.records import ImageKind, ImageRecord, ImageState

# Built once: SQLAlchemy caches their compiled form; only the parameters change.
INSERT: Final = sa.insert(images)
MARK_READY: Final = (
    sa.update(images)
    .where(
        images.c.image_id == sa.bindparam("target_id"),
        images.c.state == ImageState.UPLOADING.value,
        images.c.claimed_by.is_(None),  # a reconciler is removing it
    )
    .values(state=ImageState.READY.value)
    .returning(*images.c)
)


def to_record(row: Any, children: Sequence[str] = ()) -> ImageRecord:
    """The record of a row (with its visualizations' keys when given)."""
    return ImageRecord(
        image_id=row.image_id,
        kind=ImageKind(row.kind),
        session_id=row.session_id,
        bucket=row.bucket,
        key=row.key,
        filename=row.filename,
        content_type=row.content_type,
        size=row.size,
        sha256=row.sha256,
        state=ImageState(row.state),
        created_at=row.created_at,
        updated_at=row.updated_at,
        parent_id=row.parent_id,
        thumbnail_key=row.thumbnail_key,
        visualization_keys=tuple(children),
        metadata=row.user_metadata or {},
        upload_expires_at=row.upload_expires_at,
        etag=row.etag,
        idempotency_key=row.idempotency_key,
    )


def values_of(record: ImageRecord) -> dict[str, Any]:
    """The row of a new record (claims start empty)."""
    return {
        "image_id": record.image_id,
        "kind": record.kind.value,
        "session_id": record.session_id,
        "bucket": record.bucket,
        "key": record.key,
        "filename": record.filename,
        "content_type": record.content_type,
        "size": record.size,
        "sha256": record.sha256,
        "state": record.state.value,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "parent_id": record.parent_id,
        "thumbnail_key": record.thumbnail_key,
        "user_metadata": dict(record.metadata),
        "upload_expires_at": record.upload_expires_at,
        "etag": record.etag,
        "idempotency_key": record.idempotency_key,
    }
