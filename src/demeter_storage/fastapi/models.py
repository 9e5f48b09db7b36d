"""Pydantic models of the FastAPI integration, under the seed card's names.

The attrs objects of :mod:`demeter_storage.service.schemas` stay the one
source of truth: every model here converts from or to them, and its
validators call the domain's rules (key and name rules, metadata rules, the
1-168 h expiry) instead of restating them. A rule broken in a request body is
a 422 problem response before the service is called.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import attrs
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from demeter_storage.domain.keys import validate_filename, validate_key
from demeter_storage.domain.objects import validate_content_type, validate_metadata
from demeter_storage.service.config import (
    MAX_EXPIRY_HOURS,
    MAX_UPLOAD_BYTES,
    MIN_EXPIRY_HOURS,
    validate_expiry_hours,
)
from demeter_storage.service.schemas import DirectUpload, ImagePage, ImageResponse, UploadRequest

__all__ = [
    "DirectUploadRequest",
    "DirectUploadResponse",
    "ImagePageResponse",
    "PresignedUrlRequest",
    "PresignedUrlResponse",
    "Problem",
    "S3ImageResponse",
    "S3ImageUploadRequest",
    "VisualizationUploadRequest",
]


def _idempotency_key(value: str | None) -> str | None:
    """The service's own rule for idempotency keys (the attrs field's validator)."""
    validator = attrs.fields(UploadRequest).idempotency_key.validator
    assert validator is not None
    validator(None, None, value)  # type: ignore[arg-type]
    return value


def _metadata(value: dict[str, str]) -> dict[str, str]:
    return validate_metadata(value)


def _expiry(value: int) -> int:
    return validate_expiry_hours(value)


Filename = Annotated[
    str,
    AfterValidator(validate_filename),
    Field(
        description=(
            "The photo's name: one key segment (no '/', '\\', '..', control characters; "
            "at most 200 UTF-8 bytes). It becomes the key `{session_id}/{filename}`."
        ),
        examples=["row-12-plant-3.jpg"],
    ),
]
ContentType = Annotated[
    str,
    AfterValidator(validate_content_type),
    Field(
        description=(
            "The image's MIME type: image/jpeg, image/png, image/webp, image/tiff, "
            "image/heic or image/heif; the bytes must agree."
        ),
        examples=["image/jpeg"],
    ),
]
Metadata = Annotated[
    dict[str, str],
    AfterValidator(_metadata),
    Field(
        description=(
            "User metadata stored with the object: lowercase keys ([a-z0-9-], not starting "
            "with 'demeter-'), printable ASCII values, 1536 bytes in all."
        ),
        examples=[{"camera": "pixel-8", "row": "12"}],
    ),
]
IdempotencyKey = Annotated[
    str | None,
    AfterValidator(_idempotency_key),
    Field(
        description=(
            "The client's name for this upload (1-128 printable ASCII characters): sending "
            "the same key with the same bytes again returns the image stored then."
        ),
        examples=["5b1f0c7e-upload-1"],
    ),
]
SIZE_DESCRIPTION = (
    "The size in bytes (at least 1, at most the service's max_upload_bytes, "
    f"{MAX_UPLOAD_BYTES // (1024 * 1024)} MiB by default)."
)


class S3ImageUploadRequest(BaseModel):
    """The form fields of an original's upload (``multipart/form-data``), besides the file.

    The file is the part named ``file``, sent last. ``filename`` and
    ``content_type`` default to the file part's own; when both are given they
    must agree.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    filename: Filename | None = None
    content_type: ContentType | None = None
    size: int | None = Field(default=None, ge=1, description=SIZE_DESCRIPTION)
    metadata: Metadata = Field(default_factory=dict)
    idempotency_key: IdempotencyKey = None

    def to_domain(self, filename: str, content_type: str) -> UploadRequest:
        """The service's :class:`UploadRequest` for the file's resolved name and type."""
        return UploadRequest(
            filename=filename,
            content_type=content_type,
            size=self.size,
            metadata=self.metadata,
            idempotency_key=self.idempotency_key,
        )


class VisualizationUploadRequest(BaseModel):
    """The form fields of a visualization's upload (``multipart/form-data``), besides the file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    filename: Filename | None = None
    content_type: ContentType | None = None
    parent_id: uuid.UUID | None = Field(
        default=None,
        description="The original it was drawn from: deleting that original deletes it too.",
    )
    metadata: Metadata = Field(default_factory=dict)


class S3ImageResponse(BaseModel):
    """A stored image (the service's :class:`ImageResponse`)."""

    model_config = ConfigDict(frozen=True)

    image_id: uuid.UUID = Field(description="Its id, for the other routes.")
    kind: Literal["original", "visualization"]
    session_id: str = Field(examples=["field-7"])
    bucket: str = Field(examples=["demeter-photos-original"])
    s3_key: str = Field(examples=["field-7/row-12-plant-3.jpg"])
    filename: str = Field(examples=["row-12-plant-3.jpg"])
    content_type: str = Field(examples=["image/jpeg"])
    size: int | None = Field(description="Its length in bytes.")
    sha256: str | None = Field(description="Hex SHA-256 of its bytes (its download's ETag).")
    created_at: datetime
    parent_id: uuid.UUID | None = Field(
        default=None, description="For a visualization: its original."
    )
    thumbnail_key: str | None = None
    visualization_keys: list[str] = Field(default_factory=list)
    metadata: dict[str, str] = Field(default_factory=dict)
    url: str | None = Field(default=None, description="A presigned GET URL, when one was made.")
    url_expires_at: datetime | None = None

    @classmethod
    def from_domain(cls, image: ImageResponse) -> S3ImageResponse:
        """The model of the service's response."""
        return cls(
            image_id=image.image_id,
            kind=image.kind.value,
            session_id=image.session_id,
            bucket=image.bucket,
            s3_key=image.s3_key,
            filename=image.filename,
            content_type=image.content_type,
            size=image.size,
            sha256=image.sha256,
            created_at=image.created_at,
            parent_id=image.parent_id,
            thumbnail_key=image.thumbnail_key,
            visualization_keys=list(image.visualization_keys),
            metadata=dict(image.metadata),
            url=image.url,
            url_expires_at=image.url_expires_at,
        )


class ImagePageResponse(BaseModel):
    """One page of a session's images (the service's :class:`ImagePage`)."""

    model_config = ConfigDict(frozen=True)

    items: list[S3ImageResponse]
    next_cursor: str | None = Field(
        description="Pass it as `cursor` for the next page; null on the last one."
    )

    @classmethod
    def from_domain(cls, page: ImagePage) -> ImagePageResponse:
        """The model of the service's page."""
        return cls(
            items=[S3ImageResponse.from_domain(item) for item in page.items],
            next_cursor=page.next_cursor,
        )


class PresignedUrlRequest(BaseModel):
    """Ask for a URL that downloads one object for a while."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    s3_key: Annotated[str, AfterValidator(validate_key)] = Field(
        description="The object's key, as in `S3ImageResponse.s3_key`.",
        examples=["field-7/row-12-plant-3.jpg"],
    )
    bucket: str | None = Field(
        default=None,
        description="Its bucket (the originals' when left out); any other bucket is refused.",
        examples=["demeter-photos-original"],
    )
    expiry_hours: (
        Annotated[int, Field(ge=MIN_EXPIRY_HOURS, le=MAX_EXPIRY_HOURS), AfterValidator(_expiry)]
        | None
    ) = Field(
        default=None,
        description="How long the URL works, in whole hours (1 to 168); the service's default "
        "when left out.",
        examples=[24],
    )


class PresignedUrlResponse(BaseModel):
    """A presigned download URL."""

    model_config = ConfigDict(frozen=True)

    url: str
    s3_key: str
    bucket: str
    expiry_hours: int
    expires_at: datetime = Field(description="When the URL stops working.")


class DirectUploadRequest(BaseModel):
    """What the client says about the photo it is about to post straight to the store."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    filename: Filename
    content_type: ContentType
    size: int = Field(ge=1, description=SIZE_DESCRIPTION, examples=[2_457_600])


class DirectUploadResponse(BaseModel):
    """An HTML-form upload to the store (the service's :class:`DirectUpload`).

    Post ``multipart/form-data`` to ``url`` with every field of ``fields`` in
    order, then the file as the last part named ``file``; then complete it.
    """

    model_config = ConfigDict(frozen=True)

    image_id: uuid.UUID = Field(description="Complete the upload with this id.")
    bucket: str
    key: str
    url: str
    fields: dict[str, str]
    expires_at: datetime
    max_size: int

    @classmethod
    def from_domain(cls, upload: DirectUpload) -> DirectUploadResponse:
        """The model of the service's direct upload."""
        return cls(
            image_id=upload.image_id,
            bucket=upload.bucket,
            key=upload.key,
            url=upload.url,
            fields=dict(upload.fields),
            expires_at=upload.expires_at,
            max_size=upload.max_size,
        )


class Problem(BaseModel):
    """An RFC 9457 problem (``application/problem+json``).

    Besides the standard members, ``existing_image_id`` names the image that
    holds a key (409), ``retry_after`` the seconds to wait (503), ``errors``
    each refused field (422).
    """

    model_config = ConfigDict(extra="allow")

    type: str = Field(default="about:blank", description="A URI naming the problem's kind.")
    title: str = Field(description="The status's short name.", examples=["Conflict"])
    status: int = Field(ge=400, le=599)
    detail: str = Field(description="What went wrong and what to do about it.")
    instance: str | None = Field(default=None, description="The request's path.")
    existing_image_id: str | None = None
    image_id: str | None = None
    retry_after: int | None = None
    errors: list[dict[str, Any]] | None = None
