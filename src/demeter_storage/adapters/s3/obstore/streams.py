"""Bytes in and out of obstore: hashing on the way, parts for uploads, listing offsets.

Chunks larger than a megabyte are hashed in a worker thread (hashlib lets go
of the GIL), so the event loop keeps serving other requests; smaller ones
inline, where a thread hop would cost more than the hashing.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Final

from demeter_storage.ports.streams import Digest

INLINE_HASH_BYTES: Final = 1024 * 1024


async def sha256_of(data: bytes) -> str:
    """The lowercase hex SHA-256 of ``data``."""
    if len(data) <= INLINE_HASH_BYTES:
        return hashlib.sha256(data).hexdigest()
    return await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())


async def hashed(digest: Digest, chunk: bytes) -> bytes:
    """Account for ``chunk`` in ``digest`` and return it."""
    if len(chunk) <= INLINE_HASH_BYTES:
        return digest.update(chunk)
    return await asyncio.to_thread(digest.update, chunk)


class HashedSource:
    """A put's chunks, hashed as they are read; the first ``threshold`` bytes read ahead.

    Reading ahead decides between one request (the data ends within the
    threshold) and a multipart upload (it goes on), without holding more than
    the threshold and one chunk.
    """

    def __init__(self, chunks: AsyncIterator[bytes], threshold: int) -> None:
        self.digest = Digest()
        self._chunks = chunks
        self._threshold = threshold
        self._head: list[bytes] = []

    async def read_ahead(self) -> bytes | None:
        """The whole data if it ends within the threshold, else None (keep streaming)."""
        size = 0
        async for chunk in self._chunks:
            self._head.append(await hashed(self.digest, chunk))
            size += len(chunk)
            if size > self._threshold:
                return None
        data = b"".join(self._head)
        self._head.clear()
        return data

    async def rest(self) -> AsyncIterator[bytes]:
        """Every chunk: those read ahead, then the others, hashed as they pass."""
        while self._head:
            yield self._head.pop(0)
        async for chunk in self._chunks:
            yield await hashed(self.digest, chunk)

    async def unhashed_rest(self) -> AsyncIterator[bytes]:
        """Every chunk, as :meth:`rest`, for a reader that hashes them itself.

        :attr:`digest` then covers only what was read ahead.
        """
        while self._head:
            yield self._head.pop(0)
        async for chunk in self._chunks:
            yield chunk


def start_after(prefix: str) -> str | None:
    """The listing's exclusive start (S3's ``start-after``) for a non-empty ``prefix``.

    It sorts before every key starting with ``prefix`` and after nearly every
    other key that sorts before them: the last character decremented, then the
    largest character appended. None when that could not be a path (a ``/`` or
    a surrogate would appear): the listing then starts at the directory's start.
    """
    previous = chr(ord(prefix[-1]) - 1)
    if previous == "/" or "\ud800" <= previous <= "\udfff":
        return None
    return f"{prefix[:-1]}{previous}\U0010ffff"
