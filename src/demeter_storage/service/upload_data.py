"""Checking an upload's data before and while it is stored.

Before anything is written: the data's type, its declared size, and its first
bytes (which must be an image of the declared type). While it streams: its
size against the limit. Bytes and seekable files stay replayable (so the retry
layer can send them again); one-shot sources are wrapped.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from typing import IO, Final

import attrs

from demeter_storage.domain.errors import ValidationError
from demeter_storage.domain.images import SNIFF_BYTES, check_image
from demeter_storage.ports.streams import Payload

SPOOL_IN_MEMORY_BYTES: Final = 16 * 1024 * 1024


class DataRejected(Exception):
    """Raised inside the data stream when the data breaks a rule (too large, say).

    Deliberately not a StorageError: to the storage layers it is an error of
    the caller's data (neither retried nor counted by the circuit breaker); the
    service raises :attr:`error` once the put has been undone.
    """

    def __init__(self, error: ValidationError) -> None:
        super().__init__(str(error))
        self.error = error


def too_large(limit: int) -> ValidationError:
    """The error for data beyond ``limit`` bytes."""
    return ValidationError(f"the data is larger than the limit of {limit} bytes; upload less")


def check_size(size: int, limit: int) -> None:
    """Refuse an empty or oversized upload of known size."""
    if size == 0:
        raise ValidationError("the data is empty; upload at least 1 byte")
    if size > limit:
        raise too_large(limit)


@attrs.define
class CheckedData:
    """An upload's data, checked so far, ready to hand to a store.

    Attributes:
        payload: what to pass to ``ImageStore.put``.
        content_type: the canonical content type the bytes agree with.
        spool: a copy of one-shot data, kept for making a thumbnail (or None).
    """

    payload: Payload
    content_type: str
    spool: IO[bytes] | None = None

    def close(self) -> None:
        """Drop the spooled copy, if any."""
        if self.spool is not None:
            self.spool.close()
            self.spool = None


async def check_data(
    payload: Payload,
    declared_type: str | None,
    *,
    limit: int,
    declared_size: int | None,
    keep_copy: bool,
) -> CheckedData:
    """Check ``payload`` as far as possible without writing anything.

    Args:
        payload: the data.
        declared_type: the content type the client declared (None: any image type).
        limit: the largest size accepted, in bytes.
        declared_size: the size the client declared, if any.
        keep_copy: keep a copy of one-shot data (for a thumbnail).

    Raises:
        ValidationError: empty, too large, not an image, or not of the declared type.
    """
    if declared_size is not None:
        if isinstance(declared_size, bool) or not isinstance(declared_size, int):
            raise TypeError("size must be an int of bytes")
        check_size(declared_size, limit)
    known = payload.size_hint
    if known is not None:
        check_size(known, limit)
        if declared_size is not None and known != declared_size:
            raise ValidationError(
                f"the data is {known} bytes but {declared_size} were declared; "
                "declare the real size"
            )
    data = payload.in_memory
    if data is not None:
        return CheckedData(payload, check_image(data[:SNIFF_BYTES], declared_type))
    if payload.replayable and known is not None:
        # A seekable file: peek at its head; chunks() rewinds to its start later.
        peek = payload.chunks(SNIFF_BYTES)
        try:
            head = await anext(peek, b"")
        finally:
            await peek.aclose()
        return CheckedData(payload, check_image(head, declared_type))
    return await _check_stream(payload, declared_type, limit, declared_size, keep_copy)


async def _check_stream(
    payload: Payload,
    declared_type: str | None,
    limit: int,
    declared_size: int | None,
    keep_copy: bool,
) -> CheckedData:
    chunks = payload.chunks()
    head_chunks: list[bytes] = []
    head_length = 0
    async for chunk in chunks:
        head_chunks.append(chunk)
        head_length += len(chunk)
        if head_length >= SNIFF_BYTES:
            break
    head = b"".join(head_chunks)
    if not head:
        raise ValidationError("the data is empty; upload at least 1 byte")
    content_type = check_image(head[:SNIFF_BYTES], declared_type)
    spool: IO[bytes] | None = (
        tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES) if keep_copy else None  # noqa: SIM115 - closed by CheckedData.close
    )

    # A declared size is a tighter limit: refuse the first byte beyond it, not
    # the whole excess (a client declaring 100 bytes may send gigabytes).
    allowed = limit if declared_size is None else declared_size

    async def limited() -> AsyncIterator[bytes]:
        seen = 0

        async def emit(piece: bytes) -> bytes:
            nonlocal seen
            seen += len(piece)
            if seen > allowed:
                if declared_size is None:
                    raise DataRejected(too_large(limit))
                raise DataRejected(
                    ValidationError(
                        f"more than the {declared_size} bytes declared arrived; declare "
                        "the real size"
                    )
                )
            if spool is not None:
                await asyncio.to_thread(spool.write, piece)
            return piece

        for piece in head_chunks:
            yield await emit(piece)
        async for piece in chunks:
            yield await emit(piece)
        if declared_size is not None and seen != declared_size:
            raise DataRejected(
                ValidationError(
                    f"{seen} bytes arrived but {declared_size} were declared; declare the real size"
                )
            )

    return CheckedData(Payload.of(limited()), content_type, spool)
