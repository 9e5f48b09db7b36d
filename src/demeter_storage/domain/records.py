r"""The database record of an image, and its life cycle.

A record is written **before** its objects and removed **after** them, so an
object never exists without a row that knows about it::

    (none) --add--> uploading --mark_ready--> ready --mark_deleting--> deleting --remove--> (none)
                        \\______________________mark_deleting______________/
                                                  ready --mark_expired--> expired (a lifecycle rule
                                                                          removed its object)

Each step is idempotent, and ``reconcile()`` finishes any step that a crash
or an outage interrupted: stale ``uploading`` rows lose their objects and their
row, ``deleting`` rows are completed.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType

import attrs

from demeter_storage.domain.errors import ValidationError


class ImageState(enum.StrEnum):
    """Where a record is in its life cycle; only ``ready`` records are visible.

    ``expired`` records are tombstones of images a lifecycle rule removed
    (kept when ``DEMETER_EXPIRED_RECORDS=mark``, so that references to them in
    the host app's own tables stay meaningful).
    """

    UPLOADING = "uploading"
    READY = "ready"
    DELETING = "deleting"
    EXPIRED = "expired"


class ImageKind(enum.StrEnum):
    """An original photo from the field, or an image the ML pipeline drew."""

    ORIGINAL = "original"
    VISUALIZATION = "visualization"


def _frozen_mapping(value: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(value or {}))


@attrs.frozen(hash=False)
class ImageRecord:
    """One image and the objects that belong to it.

    Attributes:
        image_id: its identity.
        kind: original or visualization.
        session_id: the field session it belongs to.
        bucket: the bucket (or local store) holding its object.
        key: its object's key.
        filename: the name it was uploaded with.
        content_type: its MIME type.
        size: its length in bytes (None until ready, for direct uploads).
        sha256: hex SHA-256 of its bytes (None until ready).
        state: uploading, ready or deleting.
        created_at: when the record was written.
        updated_at: when its state last changed.
        parent_id: the original a visualization belongs to (deleted with it).
        thumbnail_key: the key of its thumbnail, in the same bucket, if any.
        visualization_keys: keys of the visualizations linked to it (read-only,
            derived from their own records).
        metadata: user metadata stored with the object.
        upload_expires_at: for a direct upload, when its upload URL expires.
        etag: the store's ETag of its object once ready (``audit`` compares it
            with what is stored), when the store gave one.
        idempotency_key: the client's key for retrying this upload safely
            (unique within the session).
    """

    image_id: uuid.UUID
    kind: ImageKind
    session_id: str
    bucket: str
    key: str
    filename: str
    content_type: str
    size: int | None
    sha256: str | None
    state: ImageState
    created_at: datetime
    updated_at: datetime
    parent_id: uuid.UUID | None = None
    thumbnail_key: str | None = None
    visualization_keys: tuple[str, ...] = ()
    metadata: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_mapping)
    upload_expires_at: datetime | None = None
    etag: str | None = None
    idempotency_key: str | None = None

    @property
    def object_keys(self) -> tuple[str, ...]:
        """Keys of the objects this record owns in its own bucket (object, thumbnail)."""
        return (self.key,) if self.thumbnail_key is None else (self.key, self.thumbnail_key)


def parse_image_id(value: object) -> uuid.UUID:
    """Return ``value`` as an image id (a UUID, or its text).

    Raises:
        ValidationError: text that is not a UUID.
        TypeError: neither a UUID nor a str.
    """
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            raise ValidationError(f"{value!r} is not an image id (a UUID)") from None
    raise TypeError(f"image_id must be a UUID or str, got {type(value).__name__}")
