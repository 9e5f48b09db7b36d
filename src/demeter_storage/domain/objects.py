"""Value objects describing stored objects and URLs, and the rules for their fields."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Final, Literal

import attrs

from demeter_storage.domain.errors import ValidationError

HttpMethod = Literal["GET", "PUT"]
HTTP_METHODS: tuple[HttpMethod, ...] = ("GET", "PUT")

MIN_PRESIGN_SECONDS = 1
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
"""SigV4 refuses anything longer than seven days; every store follows that rule."""

MAX_METADATA_BYTES = 1536
"""Users' share of S3's 2 KiB limit on metadata (keys plus values); the rest is
kept for the package's own fields (``demeter-*``)."""

RESERVED_METADATA_PREFIX = "demeter-"
"""User metadata keys may not start with this: adapters keep their own fields there."""

DEFAULT_CONTENT_TYPE = "application/octet-stream"

_TOKEN = r"[A-Za-z0-9!#$&^_.+-]+"  # noqa: S105 - an HTTP token, not a secret
_CONTENT_TYPE = re.compile(
    rf"^{_TOKEN}/{_TOKEN}(\s*;\s*{_TOKEN}=(\"[\x20-\x21\x23-\x7e]*\"|{_TOKEN}))*$"
)
_METADATA_KEY = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
# HTTP trims header values and some servers drop empty ones: refuse both up front.
_METADATA_VALUE = re.compile(r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$")
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def _freeze_metadata(value: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(value or {}))


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValidationError("datetimes must be timezone-aware; use datetime.now(UTC)")
    return value


@attrs.frozen(hash=False)
class ObjectInfo:
    """What a store knows about one stored object.

    Attributes:
        key: the object's key.
        size: its length in bytes.
        content_type: its MIME type, or None where a listing does not carry it
            (S3 listings; call ``head`` for it).
        sha256: lowercase hex SHA-256 of its bytes, or None when the store does not know it.
        etag: the store's opaque version tag, quoted as in HTTP, or None.
        last_modified: when it was last written (timezone-aware), or None.
        metadata: user metadata (lowercase keys, printable ASCII values); read-only.
    """

    key: str
    size: int
    content_type: str | None
    sha256: str | None = None
    etag: str | None = None
    last_modified: datetime | None = attrs.field(default=None, converter=_utc)
    metadata: Mapping[str, str] = attrs.field(factory=dict, converter=_freeze_metadata)


@attrs.frozen
class PresignedUrl:
    """A URL that grants one HTTP method on one object until ``expires_at``.

    Attributes:
        url: the URL itself.
        method: ``"GET"`` or ``"PUT"``.
        expires_at: when the URL stops working (timezone-aware UTC).
        headers: headers the request must carry, exactly as given: a PUT URL
            pins ``Content-Type`` and only creates (``If-None-Match: *``).
    """

    url: str = attrs.field(repr=lambda url: url.split("?", 1)[0] + "?...")
    method: HttpMethod
    expires_at: datetime
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=_freeze_metadata)


PUT_ONLY_CREATES: Final = "*"
"""``If-None-Match`` of every presigned PUT: it may create an object, never replace one."""


def put_url_headers(content_type: str) -> dict[str, str]:
    """The headers a presigned PUT of ``content_type`` requires."""
    return {"Content-Type": content_type, "If-None-Match": PUT_ONLY_CREATES}


def _read_only(fields: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(fields))


def _count_fields(fields: Mapping[str, str]) -> str:
    # The fields hold a signature and maybe a session token: never shown.
    return f"<{len(fields)} fields>"


@attrs.frozen
class PresignedPost:
    """An HTML form upload (S3's presigned POST) of one object, allowed until ``expires_at``.

    A client sends ``multipart/form-data`` to ``url`` with every field of
    ``fields`` and then the file, as the last part, named ``file``. The policy
    inside the fields pins the key, the content type and the size range.

    Attributes:
        url: where the form goes.
        fields: the form fields to send, in this order, before the file.
        expires_at: when the server stops accepting the form (timezone-aware UTC).
    """

    url: str
    fields: Mapping[str, str] = attrs.field(converter=_read_only, repr=_count_fields)
    expires_at: datetime


def validate_content_type(value: object) -> str:
    """Return ``value`` stripped if it is a syntactically valid MIME type.

    Raises:
        TypeError: not a str.
        ValidationError: not of the form ``type/subtype[; param=value]``.
    """
    if not isinstance(value, str):
        raise TypeError(f"content_type must be a str, got {type(value).__name__}")
    text = value.strip()
    if len(text) > 255 or not _CONTENT_TYPE.match(text):
        raise ValidationError(
            f"invalid content type {value!r}: use a MIME type such as 'image/jpeg'"
        )
    return text


def validate_metadata(value: object) -> dict[str, str]:
    """Return a copy of ``value`` if it is valid user metadata.

    Keys are 1-64 characters of ``[a-z0-9-]`` not starting with ``demeter-``;
    values are non-empty printable ASCII without surrounding spaces (HTTP would
    trim them); the total stays within 1,536 bytes (S3 allows 2 KiB in all). The rules are
    strict so that every store round-trips metadata identically.

    Raises:
        TypeError: not a mapping of str to str.
        ValidationError: a key or value breaks a rule.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"metadata must be a mapping of str to str, got {type(value).__name__}")
    result: dict[str, str] = {}
    total = 0
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise TypeError("metadata keys and values must be str")
        if not _METADATA_KEY.match(key):
            raise ValidationError(
                f"invalid metadata key {key!r}: use 1-64 lowercase letters, digits or '-'"
            )
        if key.startswith(RESERVED_METADATA_PREFIX):
            raise ValidationError(
                f"invalid metadata key {key!r}: the prefix {RESERVED_METADATA_PREFIX!r} "
                "is reserved for demeter-storage; choose another key"
            )
        if not _METADATA_VALUE.match(item):
            raise ValidationError(
                f"invalid metadata value for {key!r}: only non-empty printable ASCII without "
                "surrounding spaces is kept the same by every store; percent-encode other "
                "characters"
            )
        total += len(key) + len(item)
        result[key] = item
    if total > MAX_METADATA_BYTES:
        raise ValidationError(
            f"metadata is {total} bytes; at most {MAX_METADATA_BYTES} fit, store less"
        )
    return result


def validate_sha256(value: object) -> str:
    """Return ``value`` if it is a lowercase hex SHA-256 digest."""
    if not isinstance(value, str) or not _SHA256_HEX.match(value):
        raise ValidationError(f"invalid SHA-256 {value!r}: expected 64 lowercase hex digits")
    return value


def validate_method(value: object) -> HttpMethod:
    """Return ``value`` if it is an HTTP method a presigned URL may grant."""
    for method in HTTP_METHODS:
        if value == method:
            return method
    raise ValidationError(f"invalid method {value!r}: presigned URLs grant 'GET' or 'PUT'")


def validate_expires_in(value: object) -> int:
    """Return a presign lifetime in whole seconds, 1 second to 7 days.

    Raises:
        TypeError: not an int or a timedelta.
        ValidationError: outside 1 s to 7 days.
    """
    if isinstance(value, timedelta):
        seconds = int(value.total_seconds())
    elif isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    else:
        raise TypeError(
            f"expires_in must be an int of seconds or a timedelta, got {type(value).__name__}"
        )
    if not MIN_PRESIGN_SECONDS <= seconds <= MAX_PRESIGN_SECONDS:
        raise ValidationError(
            f"expires_in of {seconds} s is outside 1 s to 7 days ({MAX_PRESIGN_SECONDS} s); "
            "choose a lifetime in that range"
        )
    return seconds


def etag_of(sha256: str) -> str:
    """The ETag the local and in-memory stores give an object: part of its SHA-256, quoted."""
    return f'"{sha256[:32]}"'


def same_etag(stored: str | None, given: str) -> bool:
    """Whether ``given`` names the version ``stored`` (quotes and a ``W/`` prefix aside)."""
    if stored is None:
        return False
    return stored.strip('"') == given.removeprefix("W/").strip('"')


def utc_now() -> datetime:
    """The current time, timezone-aware, in UTC (the default clock of every store)."""
    return datetime.now(UTC)


@attrs.frozen
class Grant:
    """What a verified signed URL allows: its key and, for a PUT, the content type it pins."""

    key: str
    content_type: str | None = None


@attrs.frozen
class PostPolicy:
    """What a verified upload form allows: one key, one content type, a size range."""

    key: str
    content_type: str
    min_size: int
    max_size: int
    expires_at: datetime
