"""Every error the package raises, in one place.

Each message says what went wrong *and* what to do about it. Callers catch
:class:`StorageError` for "anything from demeter-storage", or a subclass for
one kind of failure. Raw library exceptions (botocore, SQLAlchemy, OS errors)
never escape an adapter: they are translated into these.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base class of every error raised by demeter-storage."""


class ValidationError(StorageError, ValueError):
    """An argument was refused before any I/O happened; nothing was written."""


class InvalidSignature(ValidationError):
    """A signed URL was tampered with, expired, or made for another key or method."""


class ObjectNotFound(StorageError, LookupError):
    """The object (or record) does not exist.

    Attributes:
        key: the key that was looked up.
        bucket: the bucket or store it was looked up in, when known.
    """

    def __init__(self, key: str, bucket: str | None = None, *, detail: str = "") -> None:
        self.key = key
        self.bucket = bucket
        where = f" in {bucket!r}" if bucket else ""
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"object {key!r} not found{where}{extra}; check the key, "
            "or list the prefix to see what exists"
        )


class _LostCondition(StorageError):
    """A conditional write or delete found the object other than required; nothing changed.

    Attributes:
        key: the object's key.
        bucket: the bucket or store, when known.
    """

    _what = "the condition did not hold"

    def __init__(self, key: str, bucket: str | None = None) -> None:
        self.key = key
        self.bucket = bucket
        where = f" in {bucket!r}" if bucket else ""
        super().__init__(f"object {key!r}{where} {self._what}")


class ObjectExists(_LostCondition):
    """A create-only write (``if_absent=True``) found an object under its key."""

    _what = "exists already and the write may only create it; nothing was written"


class ObjectChanged(_LostCondition):
    """A conditional delete (``if_match``) found another version of the object."""

    _what = "was replaced since it was read, so it was not deleted; read it again"


class StorageUnavailable(StorageError):
    """The storage backend cannot be reached now; retry later.

    Attributes:
        retry_after: seconds until the circuit breaker lets a probe through,
            when a breaker is the reason; ``None`` otherwise.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class IntegrityError(StorageError):
    """Stored bytes do not match their recorded checksum or size."""


class ConfigurationError(StorageError):
    """Settings, credentials or a bucket are wrong; fix the configuration."""


class ImageNotFound(ObjectNotFound):
    """No image has this id (or it is being deleted or uploaded, so hidden)."""

    def __init__(self, image_id: object) -> None:
        self.image_id = image_id
        StorageError.__init__(
            self,
            f"no image with id {image_id}; check the id, or list the session's images",
        )
        self.key = str(image_id)
        self.bucket = None


class ImageAlreadyExists(ValidationError):
    """An image with this key exists already; nothing was written.

    Attributes:
        existing_image_id: the image holding the key, when known.
    """

    def __init__(self, bucket: str, key: str, existing_image_id: object | None) -> None:
        self.existing_image_id = existing_image_id
        holder = f" (image {existing_image_id})" if existing_image_id else ""
        super().__init__(
            f"{key!r} in {bucket!r} is taken{holder}; delete that image first or upload "
            "under another filename"
        )


class UploadAlreadyCompleted(ValidationError):
    """``complete_direct_upload`` was called for an image that is ready already.

    Attributes:
        image_id: the image (fetch it with ``get_image``).
    """

    def __init__(self, image_id: object) -> None:
        self.image_id = image_id
        super().__init__(
            f"the direct upload of image {image_id} was completed already; "
            "fetch it with get_image()"
        )


def missing_parent(parent_id: object) -> ValidationError:
    """The error for a record whose ``parent_id`` names no record (nothing was written)."""
    return ValidationError(
        f"parent_id {parent_id} names no image record; nothing was written (was the "
        "original deleted meanwhile?)"
    )
