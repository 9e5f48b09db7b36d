"""Serving an image's bytes: one byte range, a strong ETag, ``If-None-Match``.

The ETag is the image's recorded SHA-256 (quoted), so it changes exactly when
the bytes do and needs no request to the store. A whole download streams
through the service, which checks the SHA-256 at the end: the last chunk waits
for that check, so a damaged object is a 502 (one chunk) or a body cut short of
its ``Content-Length`` (several), never a complete-looking answer. A range
streams from the store, skipping to its start (a part cannot be checked).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Final, Literal
from urllib.parse import quote

from demeter_storage.service.image_service import ImageService
from demeter_storage.service.schemas import ImageResponse

__all__ = [
    "CHUNK_SIZE",
    "Unsatisfiable",
    "byte_range",
    "content_disposition",
    "etag",
    "matches",
    "primed",
]

CHUNK_SIZE: Final = 256 * 1024
_RANGE: Final = re.compile(r"bytes=([0-9]{0,18})-([0-9]{0,18})", re.IGNORECASE | re.ASCII)
_SAFE_NAME: Final = re.compile(r"[^A-Za-z0-9._ ()+,=@-]")

Unsatisfiable = Literal["unsatisfiable"]


def etag(image: ImageResponse) -> str | None:
    """The image's strong ETag: its SHA-256, quoted (None when none was recorded)."""
    return f'"{image.sha256}"' if image.sha256 else None


def matches(if_none_match: str | None, tag: str) -> bool:
    """Whether an ``If-None-Match`` value is ``*`` or names ``tag`` (weak comparison)."""
    if not if_none_match:
        return False
    tags = [part.strip().removeprefix("W/") for part in if_none_match.split(",")]
    return "*" in tags or tag in tags


def byte_range(header: str | None, size: int) -> tuple[int, int] | Unsatisfiable | None:
    """``(start, end)`` (end exclusive) of a single ``bytes=`` range; None for the whole body.

    Several ranges, other units and malformed values are ignored (RFC 9110
    lets a server send the whole representation); numbers longer than 18
    digits are malformed too (no object is that large). A range that starts
    past the end is ``"unsatisfiable"`` (416).
    """
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":
        suffix = int(last)
        if suffix == 0 or size == 0:
            return "unsatisfiable"
        return max(size - suffix, 0), size
    start = int(first)
    if last != "" and int(last) < start:
        return None  # an invalid range-spec: ignored, like a malformed header
    if start >= size:
        return "unsatisfiable"
    end = size if last == "" else min(int(last) + 1, size)
    return start, end


def content_disposition(filename: str) -> str:
    """An ``inline`` disposition naming the file, safe in any browser and header."""
    fallback = _SAFE_NAME.sub("_", filename) or "download"
    return f"inline; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


async def whole(
    service: ImageService, image: ImageResponse, chunk_size: int = CHUNK_SIZE
) -> AsyncIterator[bytes]:
    """The image's bytes, checked against its SHA-256 by the service; the last chunk held back.

    The service checks the digest after the last chunk; holding that chunk
    back until then means a damaged object is never delivered whole: an
    object of one chunk fails before the headers (a 502), a longer one ends
    short of its ``Content-Length``, which every client reports as an error.
    """
    held: bytes | None = None
    async for chunk in service.stream_original(image.s3_key, image.bucket, chunk_size=chunk_size):
        if held is not None:
            yield held
        held = chunk
    if held is not None:
        yield held


async def part(
    service: ImageService, image: ImageResponse, start: int, end: int
) -> AsyncIterator[bytes]:
    """Bytes ``start`` to ``end`` (exclusive) of the image, from its store."""
    position = 0
    chunks = service.store_for(image.bucket).stream(image.s3_key, chunk_size=CHUNK_SIZE)
    try:
        async for chunk in chunks:
            piece = chunk[max(start - position, 0) : max(end - position, 0)]
            position += len(chunk)
            if piece:
                yield piece
            if position >= end:
                break
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


async def primed(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``chunks`` with its first chunk read now, before any header is sent.

    A store that is down or an object that is gone fails here, while the
    answer can still be a 503 or a 404; later failures can only cut the body short.
    """
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        return _replay(b"", chunks)
    return _replay(first, chunks)


async def _replay(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first:
        yield first
    async for chunk in rest:
        yield chunk
