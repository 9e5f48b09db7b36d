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
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import IO, Any, Final, Protocol

from demeter_storage.domain.errors import ObjectExists, StorageError
from demeter_storage.ports.streams import Digest

Call = Callable[..., Awaitable[Any]]
"""``call(operation_name, fn, **kwargs)``: run ``fn`` in the store's threads, errors translated."""


Body = bytes | bytearray
"""What botocore accepts as a part's body (a memoryview it refuses)."""


_HEX_DIGITS: Final = frozenset("0123456789abcdef")


def composite_etag(part_etags: list[str]) -> str | None:
    """The ETag S3 gives a multipart object of these parts, if their ETags are MD5s.

    S3 (and SeaweedFS, MinIO, moto) name a completed multipart object
    ``"<MD5 of the parts' binary MD5s>-<number of parts>"``. None when a
    part's ETag is no MD5 (encrypted objects, other servers).
    """
    digests = []
    for etag in part_etags:
        hexdigest = etag.strip('"').lower()
        if len(hexdigest) != 32 or not _HEX_DIGITS.issuperset(hexdigest):
            return None
        digests.append(bytes.fromhex(hexdigest))
    return f'"{hashlib.md5(b"".join(digests)).hexdigest()}-{len(digests)}"'  # noqa: S324 - S3's ETag


class CompletionRefused(ObjectExists):
    """A create-only completion found an object under the key (``If-None-Match: *``).

    Attributes:
        expected_etag: the ETag the completion would have given the object
            (None if the parts' ETags are no MD5s): an object with it holds
            this upload's very parts.
    """

    def __init__(self, key: str, bucket: str, expected_etag: str | None) -> None:
        super().__init__(key, bucket)
        self.expected_etag = expected_etag


class PartSource(Protocol):
    """Where :func:`upload_parts` takes its parts from."""

    async def next_part(self, size: int) -> Body:
        """The next part of at most ``size`` bytes; empty at the end."""
        ...

    def release(self, body: Body) -> None:
        """``body`` was uploaded (or given up): its memory may be reused."""
        ...


class FileParts:
    """Parts read from a file into a few reused buffers, hashed on the way.

    Reading each part into a fresh 8 MiB ``bytes`` leaves freed blocks in the
    arenas of the worker threads, which glibc keeps: peak memory then grows
    well past ``part_size * concurrency``. ``readinto`` a small pool does not.
    """

    def __init__(self, file: IO[bytes], digest: Digest, run: Callable[..., Awaitable[Any]]) -> None:
        self._file = file
        self._digest = digest
        self._run = run
        self._free: list[bytearray] = []

    async def next_part(self, size: int) -> Body:
        """The next ``size`` bytes of the file (fewer at its end), hashed."""
        buffer = self._free.pop() if self._free else bytearray(size)

        def read_and_hash() -> int:
            count = 0
            view = memoryview(buffer)
            while count < size:
                got = self._file.readinto(view[count:])  # type: ignore[attr-defined]
                if not got:
                    break
                count += got
            self._digest.update(view[:count])  # type: ignore[arg-type]
            return count

        count = await self._run(read_and_hash)
        if count == size:
            return buffer
        self._free.append(buffer)
        return bytes(buffer[:count])  # the last part: one small copy

    def release(self, body: Body) -> None:
        """Return a full part's buffer to the pool."""
        if isinstance(body, bytearray):
            self._free.append(body)


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

    async def next_part(self, size: int) -> Body:
        """The next part (see :class:`PartSource`)."""
        return await self.read(size)

    def release(self, body: Body) -> None:
        """Nothing to reuse: parts of an iterable are its own chunks."""

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
    reader: PartSource,
    part_size: int,
    concurrency: int,
    complete_options: dict[str, str] | None = None,
) -> str:
    """Upload what ``reader`` holds as a multipart upload; return the ETag.

    ``complete_options`` go with the completion (``IfNoneMatch``: only create).

    Raises:
        CompletionRefused: the completion was create-only and the key is taken
            (the upload is aborted).
    """
    created = await call(
        "CreateMultipartUpload",
        client.create_multipart_upload,
        Bucket=bucket,
        Key=key,
        ContentType=content_type,
        Metadata=metadata,
        ChecksumAlgorithm="CRC32",
    )
    upload_id = required(created, "UploadId", "CreateMultipartUpload", bucket, key)
    tasks: list[asyncio.Task[dict[str, Any]]] = []
    try:
        slots = asyncio.Semaphore(concurrency)

        async def send(number: int, body: Body) -> dict[str, Any]:
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
                part: dict[str, Any] = {
                    "PartNumber": number,
                    "ETag": required(response, "ETag", "UploadPart", bucket, key),
                }
                # Some S3-compatible servers neither check nor echo a part's checksum:
                # then the completion names the parts by ETag alone.
                if checksum := response.get("ChecksumCRC32"):
                    part["ChecksumCRC32"] = checksum
                return part
            finally:
                reader.release(body)
                slots.release()

        number = 0
        while True:
            await slots.acquire()
            failed = next((t for t in tasks if t.done() and t.exception()), None)
            if failed is not None:
                slots.release()
                await failed  # raises the part's error
            body = await reader.next_part(part_size)
            if not body:
                slots.release()
                break
            number += 1
            tasks.append(asyncio.create_task(send(number, body)))
        parts = await asyncio.gather(*tasks)
        try:
            completed = await call(
                "CompleteMultipartUpload",
                client.complete_multipart_upload,
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                **(complete_options or {}),
            )
        except ObjectExists as exc:
            expected = composite_etag([part["ETag"] for part in parts])
            raise CompletionRefused(key, bucket, expected) from exc
        return required(completed, "ETag", "CompleteMultipartUpload", bucket, key)
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


def required(answer: dict[str, Any], field: str, operation: str, bucket: str, key: str) -> str:
    """A field of the server's answer the upload (or a part copy) cannot go on without.

    Raises:
        StorageError: the server left it out. :func:`upload_parts` then aborts the
            upload; without an ETag for the completed object, the object the server
            did assemble stays (the put failed: the service deletes what it wrote).
    """
    value = answer.get(field)
    if not value:
        raise StorageError(
            f"S3 {operation} of {key!r} in bucket {bucket!r} failed: the server's answer has "
            f"no {field}; this server does not support multipart uploads as S3 does (raise "
            "S3_MULTIPART_THRESHOLD to send objects in one request)"
        )
    return str(value)
