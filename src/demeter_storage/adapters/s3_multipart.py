"""Streaming a put into S3: parts read one at a time, uploaded a few at once.

Memory stays bounded by ``part_size * (concurrency + 1)`` whatever the object's
size: the next part is read only when an upload slot is free. Every part
carries a CRC32 checksum, which the server verifies; the whole object's
SHA-256 is computed on the way. Any failure, cancellation included, waits for
the parts in flight and then aborts the multipart upload, so no partial object
and no dangling upload remain (the lifecycle rule that aborts incomplete
uploads after a day is the second line of defence).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from demeter_storage.streams import Digest

Call = Callable[..., Awaitable[Any]]
"""``call(operation_name, fn, **kwargs)``: run ``fn`` in the store's executor, errors translated."""


class PartReader:
    """Reads an async chunk iterator in pieces of a requested size, hashing on the way."""

    def __init__(self, chunks: AsyncIterator[bytes], digest: Digest) -> None:
        self._chunks = chunks
        self._digest = digest
        self._pending: list[bytes] = []
        self.exhausted = False

    async def read(self, size: int) -> bytes:
        """Return the next ``size`` bytes (fewer only at the end of the data)."""
        pieces: list[bytes] = []
        length = 0
        while length < size:
            if self._pending:
                chunk = self._pending.pop(0)
            elif self.exhausted:
                break
            else:
                try:
                    chunk = await anext(self._chunks)
                except StopAsyncIteration:
                    self.exhausted = True
                    break
                # Hashing a megabyte takes about a millisecond: keep it off the event loop.
                await asyncio.to_thread(self._digest.update, chunk)
            pieces.append(chunk)
            length += len(chunk)
        if len(pieces) == 1 and length <= size:
            return pieces[0]  # a file read at part size: no copy at all
        data = b"".join(pieces)
        if length > size:
            view = memoryview(data)
            self._pending.insert(0, bytes(view[size:]))
            data = bytes(view[:size])
        return data

    def unread(self, data: bytes) -> None:
        """Put ``data`` back in front of what :meth:`read` returns next."""
        if data:
            self._pending.insert(0, data)


async def upload_parts(
    call: Call,
    client: Any,
    *,
    bucket: str,
    key: str,
    content_type: str,
    metadata: dict[str, str],
    reader: PartReader,
    part_size: int,
    concurrency: int,
) -> str:
    """Upload what ``reader`` holds as a multipart upload; return the ETag."""
    created = await call(
        "CreateMultipartUpload",
        client.create_multipart_upload,
        Bucket=bucket,
        Key=key,
        ContentType=content_type,
        Metadata=metadata,
        ChecksumAlgorithm="CRC32",
    )
    upload_id = created["UploadId"]
    tasks: list[asyncio.Task[dict[str, Any]]] = []
    try:
        slots = asyncio.Semaphore(concurrency)

        async def send(number: int, body: bytes) -> dict[str, Any]:
            try:
                response = await call(
                    "UploadPart",
                    client.upload_part,
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=body,
                    ChecksumAlgorithm="CRC32",  # botocore computes it; the server checks it
                )
                return {
                    "PartNumber": number,
                    "ETag": response["ETag"],
                    "ChecksumCRC32": response["ChecksumCRC32"],
                }
            finally:
                slots.release()

        number = 0
        while True:
            await slots.acquire()
            failed = next((t for t in tasks if t.done() and t.exception()), None)
            if failed is not None:
                slots.release()
                await failed  # raises the part's error
            body = await reader.read(part_size)
            if not body:
                slots.release()
                break
            number += 1
            tasks.append(asyncio.create_task(send(number, body)))
        parts = await asyncio.gather(*tasks)
        completed = await call(
            "CompleteMultipartUpload",
            client.complete_multipart_upload,
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
        )
        return str(completed["ETag"])
    except BaseException:
        # Let parts already on the wire finish first: a part that lands after the
        # abort would otherwise keep its storage (and its cost) on the server.
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await call(
                "AbortMultipartUpload",
                client.abort_multipart_upload,
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
            )
        raise
