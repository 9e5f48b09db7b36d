"""The S3 store's conditional operations: copies, create-only copies, deletes of one version.

A create-only copy is a multipart upload of one server-side part copy
(``UploadPartCopy``) completed with ``If-None-Match: *``: servers that
ignore ``If-None-Match`` on ``CopyObject`` (moto; Cloudflare R2 and Ceph RGW,
by their documentation) enforce it on ``CompleteMultipartUpload``, so the
copy never replaces an object on any of them. Every copy is pinned to the
source's ETag (``x-amz-copy-source-if-match``): a source replaced between
the ``HeadObject`` and the copy is read again and copied anew, so the
returned :class:`~demeter_storage.domain.objects.ObjectInfo` describes the
bytes that arrived.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import attrs

from demeter_storage.adapters.s3.config import MAX_PART_SIZE, MAX_PARTS
from demeter_storage.adapters.s3.multipart import Call, required
from demeter_storage.adapters.s3.reads import is_replaced
from demeter_storage.domain.errors import (
    ObjectChanged,
    ObjectExists,
    ObjectNotFound,
    StorageError,
)
from demeter_storage.domain.objects import ObjectInfo

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

COPY_ATTEMPTS: Final = 3
"""Copies of a source replaced while it was copied, before giving up."""
SINGLE_COPY_PART_LIMIT: Final = MAX_PART_SIZE
"""The largest source copied in one ``UploadPartCopy`` (S3's limit for a part)."""


def copy_ranges(size: int, part_size: int) -> list[tuple[int, int] | None]:
    """The source byte ranges (inclusive) of each part copy; ``[None]``: one whole copy."""
    if size <= SINGLE_COPY_PART_LIMIT:
        return [None]
    step = min(max(part_size, -(-size // MAX_PARTS)), MAX_PART_SIZE)
    return [(start, min(start + step, size) - 1) for start in range(0, size, step)]


class S3Conditions:
    """Conditional operations on one bucket, through the S3 store's calls.

    Args:
        bucket: the bucket's name.
        client: the store's boto3 client.
        call: the store's ``_call`` (its threads, its error translation).
        describe: turns a ``HeadObject`` answer into an ObjectInfo.
        clock: returns the current time.
        part_size: the store's multipart part size (for sources over 5 GiB).
    """

    def __init__(
        self,
        bucket: str,
        client: S3Client,
        call: Call,
        *,
        describe: Callable[[str, dict[str, Any]], ObjectInfo],
        clock: Callable[[], datetime],
        part_size: int,
    ) -> None:
        self.bucket = bucket
        self.client = client
        self._call = call
        self._describe = describe
        self._clock = clock
        self._part_size = part_size

    async def _head(self, key: str) -> dict[str, Any]:
        response: dict[str, Any] = await self._call(
            "HeadObject", self.client.head_object, key=key, Bucket=self.bucket, Key=key
        )
        return response

    async def copy(self, source: str, target: str, *, if_absent: bool) -> ObjectInfo:
        """Copy ``source`` to ``target`` on the server, with its type and metadata.

        Raises:
            ObjectNotFound: nothing is stored under ``source``.
            ObjectExists: ``if_absent`` and an object is stored under ``target``.
            StorageError: the source was replaced during each of the attempts.
        """
        for _ in range(COPY_ATTEMPTS):
            head = await self._head(source)
            info = self._describe(source, head)
            etag: str | None
            try:
                if if_absent:
                    etag = await self._create_only_copy(source, target, head)
                else:
                    etag = await self._copy_object(source, target, info.etag)
            except ObjectExists:
                raise  # the completion's If-None-Match lost: the target is taken
            except StorageError as exc:
                if is_replaced(exc.__cause__):
                    continue  # the source changed after the HEAD: copy what is there now
                raise
            return attrs.evolve(
                info, key=target, etag=etag or info.etag, last_modified=self._clock()
            )
        raise StorageError(
            f"S3 copy of {source!r} to {target!r} in bucket {self.bucket!r} failed: the "
            f"source was replaced while it was copied, {COPY_ATTEMPTS} times; copy it again"
        )

    async def _copy_object(self, source: str, target: str, etag: str | None) -> str | None:
        pinned = {"CopySourceIfMatch": etag} if etag else {}
        response = await self._call(
            "CopyObject",
            self.client.copy_object,
            key=target,
            Bucket=self.bucket,
            Key=target,
            CopySource={"Bucket": self.bucket, "Key": source},
            MetadataDirective="COPY",
            **pinned,
        )
        etag_copied: str | None = response.get("CopyObjectResult", {}).get("ETag")
        return etag_copied

    async def _create_only_copy(self, source: str, target: str, head: dict[str, Any]) -> str:
        """Copy as parts of a multipart upload whose completion only creates ``target``."""
        pinned = {"CopySourceIfMatch": head["ETag"]} if head.get("ETag") else {}
        created = await self._call(
            "CreateMultipartUpload",
            self.client.create_multipart_upload,
            key=target,
            Bucket=self.bucket,
            Key=target,
            ContentType=head.get("ContentType") or "application/octet-stream",
            Metadata=dict(head.get("Metadata", {})),
        )
        upload_id = required(created, "UploadId", "CreateMultipartUpload", self.bucket, target)
        try:
            parts = []
            ranges = copy_ranges(int(head["ContentLength"]), self._part_size)
            for number, byte_range in enumerate(ranges, start=1):
                part_range = (
                    {"CopySourceRange": f"bytes={byte_range[0]}-{byte_range[1]}"}
                    if byte_range is not None
                    else {}
                )
                copied = await self._call(
                    "UploadPartCopy",
                    self.client.upload_part_copy,
                    key=target,
                    Bucket=self.bucket,
                    Key=target,
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource={"Bucket": self.bucket, "Key": source},
                    **part_range,
                    **pinned,
                )
                result = copied.get("CopyPartResult", {})
                etag = required(result, "ETag", "UploadPartCopy", self.bucket, target)
                parts.append({"PartNumber": number, "ETag": etag})
            completed = await self._call(
                "CompleteMultipartUpload",
                self.client.complete_multipart_upload,
                key=target,
                Bucket=self.bucket,
                Key=target,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                IfNoneMatch="*",
            )
            return required(completed, "ETag", "CompleteMultipartUpload", self.bucket, target)
        except BaseException:
            # Nothing was created: leave no invisible upload behind either.
            with contextlib.suppress(Exception):
                await self._call(
                    "AbortMultipartUpload",
                    self.client.abort_multipart_upload,
                    key=target,
                    Bucket=self.bucket,
                    Key=target,
                    UploadId=upload_id,
                )
            raise

    async def delete_if_match(self, key: str, etag: str) -> None:
        """Delete ``key`` if its ETag is ``etag``; a missing key is fine.

        Raises:
            ObjectChanged: another version of the object is stored.
        """
        try:
            await self._call(
                "DeleteObject",
                self.client.delete_object,
                key=key,
                Bucket=self.bucket,
                Key=key,
                IfMatch=etag,
            )
        except ObjectNotFound:
            return  # AWS and moto answer 404 for a conditional delete of a missing key
        except ObjectChanged:
            # SeaweedFS answers 412 for a key that is gone too: only another
            # version of the object means the delete lost.
            try:
                await self._head(key)
            except ObjectNotFound:
                return
            raise

    async def finish_own_object(
        self,
        key: str,
        expected_etag: str | None,
        record_sha256: Callable[[str, str], Awaitable[object]],
    ) -> None:
        """After a refused create-only multipart put: finish the object if it is this put's.

        A retried put whose first attempt was completed by the server, though
        its answer was lost, finds its own object under the key: the same
        parts make the same composite ETag. That attempt never recorded the
        SHA-256 (the last step of a multipart put), so it is recorded now;
        whoever compares SHA-256s after the ``ObjectExists`` (the service)
        then reads it from ``head``. Another object is left as it is.
        ``record_sha256(key, etag)`` records it, if the object still has ``etag``.
        """
        if expected_etag is None:
            return
        try:
            head = await self._head(key)
        except StorageError:
            return  # best effort: the put fails with ObjectExists all the same
        info = self._describe(key, head)
        if info.sha256 is None and info.etag == expected_etag:
            await record_sha256(key, expected_etag)
