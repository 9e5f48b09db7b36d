"""Requests and responses of the image service, and their JSON form.

``converter.unstructure(response)`` (or ``response.to_dict()``) gives a
JSON-ready dict: UUIDs and datetimes become strings.
"""

from __future__ import annotations

import enum
import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final

import attrs
from cattrs.preconf.json import make_converter

from demeter_storage.domain.errors import ValidationError
from demeter_storage.domain.records import ImageKind, ImageRecord, ImageState

converter = make_converter()
converter.register_unstructure_hook(uuid.UUID, str)
converter.register_structure_hook(uuid.UUID, lambda value, _: uuid.UUID(str(value)))
converter.register_unstructure_hook(MappingProxyType, dict)
converter.register_unstructure_hook_func(
    lambda cls: isinstance(cls, type) and issubclass(cls, enum.Enum), lambda value: value.value
)


def _frozen_mapping(value: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(value or {}))


_IDEMPOTENCY_KEY: Final = re.compile(r"[\x21-\x7e]{1,128}")


def _idempotency_key(_instance: object, _attribute: object, value: str | None) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise TypeError(f"idempotency_key must be a str, got {type(value).__name__}")
    if not _IDEMPOTENCY_KEY.fullmatch(value):
        raise ValidationError(
            f"invalid idempotency_key {value!r}: use 1-128 printable ASCII characters "
            "without spaces (a UUID, say)"
        )


@attrs.frozen(hash=False)
class UploadRequest:
    """What the client says about an upload.

    Attributes:
        filename: the photo's name (it becomes the key ``{session_id}/{filename}``).
        content_type: its declared MIME type; the bytes must agree.
        size: the declared size in bytes, if known: checked before anything is
            written, and against what arrives.
        metadata: user metadata stored with the object (camera, GPS, row...).
        idempotency_key: the client's name for this upload (1-128 printable
            ASCII characters, unique within the session): sending the same
            key with the same bytes again returns the image already stored;
            with other bytes it is a ``ValidationError``.
    """

    filename: str
    content_type: str
    size: int | None = None
    metadata: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_mapping)
    idempotency_key: str | None = attrs.field(default=None, validator=_idempotency_key)


@attrs.frozen(hash=False)
class ImageResponse:
    """A stored image, as the API returns it.

    Attributes:
        image_id: its id (for ``get_image`` and ``delete_image``).
        kind: ``original`` or ``visualization``.
        session_id: its session.
        bucket: the bucket holding it.
        s3_key: its key.
        filename: its name.
        content_type: its MIME type.
        size: its length in bytes.
        sha256: hex SHA-256 of its bytes.
        created_at: when it was uploaded.
        parent_id: for a visualization, the original it belongs to.
        thumbnail_key: the key of its thumbnail, if one was made.
        visualization_keys: keys of the visualizations linked to it.
        metadata: its user metadata.
        url: a presigned GET URL, when one was asked for.
        url_expires_at: when ``url`` stops working.
    """

    image_id: uuid.UUID
    kind: ImageKind
    session_id: str
    bucket: str
    s3_key: str
    filename: str
    content_type: str
    size: int | None
    sha256: str | None
    created_at: datetime
    parent_id: uuid.UUID | None = None
    thumbnail_key: str | None = None
    visualization_keys: tuple[str, ...] = ()
    metadata: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_mapping)
    url: str | None = attrs.field(default=None, repr=lambda url: "..." if url else "None")
    url_expires_at: datetime | None = None

    @classmethod
    def from_record(
        cls, record: ImageRecord, url: str | None = None, url_expires_at: datetime | None = None
    ) -> ImageResponse:
        """Describe ``record`` (which must be ready)."""
        if record.state is not ImageState.READY:
            raise ValueError(f"record {record.image_id} is {record.state}, not ready")
        return cls(
            image_id=record.image_id,
            kind=record.kind,
            session_id=record.session_id,
            bucket=record.bucket,
            s3_key=record.key,
            filename=record.filename,
            content_type=record.content_type,
            size=record.size,
            sha256=record.sha256,
            created_at=record.created_at,
            parent_id=record.parent_id,
            thumbnail_key=record.thumbnail_key,
            visualization_keys=record.visualization_keys,
            metadata=record.metadata,
            url=url,
            url_expires_at=url_expires_at,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        result: dict[str, Any] = converter.unstructure(self)
        return result


@attrs.frozen(hash=False)
class DirectUpload:
    """An upload a client sends straight to the store, as an HTML form (a presigned POST).

    Send ``multipart/form-data`` to :attr:`url` with every field of
    :attr:`fields`, in order, then the file as the last part named ``file``;
    then call ``complete_direct_upload(image_id)``.

    Attributes:
        image_id: the image's id (for ``complete_direct_upload``).
        bucket: the bucket it goes to.
        key: its object key, ``{session_id}/{filename}``.
        url: where the form goes.
        fields: the form fields (the policy pins key, content type and size).
        expires_at: when the store stops accepting the form.
        max_size: the largest body accepted (the declared size).
    """

    image_id: uuid.UUID
    bucket: str
    key: str
    url: str
    fields: Mapping[str, str] = attrs.field(converter=_frozen_mapping, repr=False)
    expires_at: datetime
    max_size: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what an API returns to the client)."""
        result: dict[str, Any] = converter.unstructure(self)
        return result


@attrs.frozen
class ImagePage:
    """One page of a session's images.

    Attributes:
        items: the images, in ``(bucket, key)`` order.
        next_cursor: pass it back for the next page; None on the last one.
    """

    items: tuple[ImageResponse, ...]
    next_cursor: str | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        result: dict[str, Any] = converter.unstructure(self)
        return result
