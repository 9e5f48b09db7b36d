"""Bytes in and out of obstore: hashing on the way, parts for uploads and downloads, chunks.

Chunks larger than a megabyte are hashed in a worker thread (hashlib lets go
of the GIL), so the event loop keeps serving other requests; smaller ones
inline, where a thread hop would cost more than the hashing.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

from demeter_storage.streams import Digest

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


class ChunkCutter:
    """Re-cuts pieces of any size into chunks of exactly ``chunk_size`` bytes.

    obstore's streams yield chunks of *at least* a minimum size; the port
    promises at most ``chunk_size``.
    """

    def __init__(self, chunk_size: int) -> None:
        self._chunk_size = chunk_size
        self._pending = b""

    def cut(self, piece: bytes | memoryview) -> list[bytes]:
        """The whole chunks ``piece`` completes; the remainder waits for the next piece."""
        size = self._chunk_size
        if not self._pending and len(piece) == size:
            return [bytes(piece)]
        data = self._pending + bytes(piece) if self._pending else memoryview(piece)
        whole = len(data) - len(data) % size
        chunks = [bytes(data[start : start + size]) for start in range(0, whole, size)]
        self._pending = bytes(data[whole:])
        return chunks

    def rest(self) -> bytes:
        """What is left once the pieces ended (shorter than a chunk; maybe empty)."""
        rest, self._pending = self._pending, b""
        return rest


class RangedParts:
    """Bytes ``[start, end)`` of an object, fetched in parts, several at once, read in order.

    ``fetch(begin, stop)`` returns the bytes ``[begin, stop)``. At most
    ``concurrency`` parts are in flight or waiting to be read, so memory stays
    bounded by ``part_size * concurrency`` whatever the object's size. Call
    :meth:`start` to begin fetching before reading, and :meth:`aclose` once
    done: it cancels the parts still in flight.
    """

    def __init__(
        self,
        fetch: Callable[[int, int], Awaitable[bytes]],
        *,
        start: int,
        end: int,
        part_size: int,
        concurrency: int,
    ) -> None:
        self._fetch = fetch
        self._begins = iter(range(start, end, part_size))
        self._end = end
        self._part_size = part_size
        self._concurrency = concurrency
        self._pending: deque[asyncio.Future[bytes]] = deque()

    def start(self) -> None:
        """Send the first ``concurrency`` requests."""
        while len(self._pending) < self._concurrency and self._fetch_next():
            pass

    def _fetch_next(self) -> bool:
        begin = next(self._begins, None)
        if begin is None:
            return False
        stop = min(begin + self._part_size, self._end)
        self._pending.append(asyncio.ensure_future(self._fetch(begin, stop)))
        return True

    def __aiter__(self) -> RangedParts:
        return self

    async def __anext__(self) -> bytes:
        # A plain iterator, no async generator: nothing for the loop to finalise later.
        self.start()
        if not self._pending:
            raise StopAsyncIteration
        part = await self._pending[0]
        self._pending.popleft()
        self._fetch_next()
        return part

    async def aclose(self) -> None:
        """Cancel the parts still in flight (and collect their errors, if any)."""
        for pending in self._pending:
            pending.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)
        self._pending.clear()


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
