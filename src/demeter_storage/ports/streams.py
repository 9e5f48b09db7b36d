"""Data sources for ``put``: bytes, binary files and async iterables, read in chunks.

Every store accepts the same three kinds of data. :class:`Payload` checks the
kind once, up front (a wrong type is a ``TypeError`` before any I/O), and then
hands out chunks without ever reading a file or an iterable whole.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from typing import IO, Final, TypeAlias

DEFAULT_CHUNK_SIZE: Final = 1024 * 1024

PutData: TypeAlias = "bytes | bytearray | memoryview | IO[bytes] | AsyncIterable[bytes] | Payload"
"""What ``ImageStore.put`` accepts."""

_IN_MEMORY_FILES = (io.BytesIO,)


class PayloadConsumed(RuntimeError):
    """A one-shot data source was read already and cannot be read again."""


class Payload:
    """One put's data source, checked for type and readable in chunks.

    Bytes can be read any number of times; a seekable file is rewound to where
    it started; an async iterable, or an unseekable file, can be read once.
    """

    __slots__ = ("_data", "_file", "_file_start", "_iterable", "_started", "size_hint")

    def __init__(
        self,
        *,
        data: bytes | None = None,
        file: IO[bytes] | None = None,
        iterable: AsyncIterable[bytes] | None = None,
    ) -> None:
        self._data = data
        self._file = file
        self._iterable = iterable
        self._started = False
        self._file_start: int | None = None
        self.size_hint: int | None = len(data) if data is not None else None
        if file is not None:
            self._file_start, self.size_hint = _seek_position_and_remaining(file)

    @classmethod
    def of(cls, data: object) -> Payload:
        """Wrap ``data`` (or return it, if it is a Payload already).

        Raises:
            TypeError: ``data`` is none of bytes, a binary file or an async iterable
                of bytes (a ``str`` or a text-mode file included).
        """
        if isinstance(data, Payload):
            return data
        if isinstance(data, bytes | bytearray | memoryview):
            return cls(data=bytes(data))
        if isinstance(data, io.TextIOBase):
            raise TypeError("data is a text-mode file; open it in binary mode ('rb')")
        if callable(getattr(data, "read", None)):
            return cls(file=data)  # type: ignore[arg-type]
        if isinstance(data, AsyncIterable):
            return cls(iterable=data)
        if isinstance(data, str):
            raise TypeError("data is a str; encode it to bytes first")
        raise TypeError(
            f"data must be bytes, a binary file object or an async iterable of bytes, "
            f"got {type(data).__name__}"
        )

    @property
    def in_memory(self) -> bytes | None:
        """The whole data when it was given as bytes, else None."""
        return self._data

    def rewound_file(self) -> IO[bytes] | None:
        """The file given as data, positioned where it started, if it is seekable."""
        if self._file is None or self._file_start is None:
            return None
        self._file.seek(self._file_start)
        return self._file

    @property
    def replayable(self) -> bool:
        """Whether :meth:`chunks` can be called again (after a failed attempt, say)."""
        return self._data is not None or self._file_start is not None or not self._started

    async def chunks(self, chunk_size: int = DEFAULT_CHUNK_SIZE) -> AsyncGenerator[bytes, None]:
        """Yield the data in chunks of at most ``chunk_size`` bytes (none empty).

        Raises:
            PayloadConsumed: a one-shot source was read before.
            TypeError: the source yielded something other than bytes.
        """
        if not self.replayable:
            raise PayloadConsumed("this data source was read already; pass it again")
        self._started = True
        if self._data is not None:
            view = memoryview(self._data)
            for start in range(0, len(view), chunk_size):
                yield bytes(view[start : start + chunk_size])
        elif self._file is not None:
            async for chunk in self._file_chunks(self._file, chunk_size):
                yield chunk
        else:
            assert self._iterable is not None
            async for chunk in _split(self._iterable, chunk_size):
                yield chunk

    async def read_all(self) -> bytes:
        """Return the whole data (only for callers that need it in memory anyway)."""
        if self._data is not None:
            return self._data
        return b"".join([chunk async for chunk in self.chunks()])

    async def _file_chunks(self, file: IO[bytes], chunk_size: int) -> AsyncIterator[bytes]:
        if self._file_start is not None:
            file.seek(self._file_start)
        in_memory = isinstance(file, _IN_MEMORY_FILES)
        while True:
            # Typed as bytes, but a file opened in text mode returns str: check.
            chunk: object = (
                file.read(chunk_size)
                if in_memory
                else await asyncio.to_thread(file.read, chunk_size)
            )
            if isinstance(chunk, str):
                raise TypeError("the file returned str; open it in binary mode ('rb')")
            if not isinstance(chunk, bytes | bytearray | memoryview):
                raise TypeError(
                    f"the file's read() returned {type(chunk).__name__}; pass a blocking "
                    "binary file"
                )
            if not chunk:
                return
            yield bytes(chunk)


def _seek_position_and_remaining(file: IO[bytes]) -> tuple[int | None, int | None]:
    try:
        if not file.seekable():
            return None, None
        start = file.tell()
        end = file.seek(0, io.SEEK_END)
        file.seek(start)
    except (AttributeError, OSError, ValueError):
        return None, None
    return start, end - start


async def _split(source: AsyncIterable[object], chunk_size: int) -> AsyncIterator[bytes]:
    async for item in source:
        if not isinstance(item, bytes | bytearray | memoryview):
            raise TypeError(
                f"the async iterable yielded {type(item).__name__}; it must yield bytes"
            )
        if isinstance(item, bytes) and len(item) <= chunk_size:
            if item:
                yield item
            continue
        view = memoryview(item).cast("B")
        for start in range(0, len(view), chunk_size):
            piece = view[start : start + chunk_size]
            if piece:
                yield bytes(piece)


class Digest:
    """Counts bytes and computes SHA-256 as chunks pass through."""

    __slots__ = ("_hash", "size")

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.size = 0

    def update(self, chunk: bytes) -> bytes:
        """Account for ``chunk`` and return it unchanged."""
        self._hash.update(chunk)
        self.size += len(chunk)
        return chunk

    @property
    def sha256(self) -> str:
        """Lowercase hex SHA-256 of everything seen so far."""
        return self._hash.hexdigest()
