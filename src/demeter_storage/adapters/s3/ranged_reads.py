"""Reading an object in parts, several at once, and re-cutting what arrives into chunks.

Both S3 adapters stream a large object this way: the first part streams at
once while the next ones are fetched in parallel, each request conditional on
the first answer's ETag, so that a reader never mixes two versions of an
object.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

from demeter_storage.domain.errors import StorageError


def replaced_while_read(bucket: str, key: str) -> StorageError:
    """The error of a read whose object was replaced between two of its parts."""
    return StorageError(
        f"{key!r} in bucket {bucket!r} was replaced while it was being read; read it again"
    )


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
    ``concurrency`` parts are in flight or waiting to be read, besides the one
    the reader holds, so memory stays bounded by about
    ``part_size * (concurrency + 1)`` whatever the object's size. Call
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
