"""An :class:`~demeter_storage.ports.ImageStore` on S3 (and S3-compatible servers), on boto3.

boto3 is synchronous; its calls run in a thread pool owned by the store, sized
by ``max_concurrency`` with botocore's connection pool of the same size. boto3's
own retries are off: wrap the store in
:class:`~demeter_storage.adapters.resilience.store.ResilientImageStore` for retries and
a circuit breaker (``build_service`` always does).
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import hashlib
import logging
import re
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from demeter_storage.adapters.s3.bucket import S3Bucket
from demeter_storage.adapters.s3.conditions import S3Conditions
from demeter_storage.adapters.s3.config import S3Config, build_s3_client
from demeter_storage.adapters.s3.errors import translate
from demeter_storage.adapters.s3.log_redaction import watch_client
from demeter_storage.adapters.s3.multipart import (
    CompletionRefused,
    FileParts,
    PartReader,
    PartSource,
    upload_parts,
)
from demeter_storage.adapters.s3.presign import S3Presigner
from demeter_storage.adapters.s3.ranged_reads import ChunkCutter, RangedParts, replaced_while_read
from demeter_storage.adapters.s3.reads import is_replaced, open_first_part, read_part
from demeter_storage.domain.buckets import validate_bucket_name
from demeter_storage.domain.errors import StorageError
from demeter_storage.domain.lifecycle import LifecyclePolicy
from demeter_storage.domain.objects import (
    RESERVED_METADATA_PREFIX,
    HttpMethod,
    ObjectInfo,
    PresignedPost,
    PresignedUrl,
    utc_now,
)
from demeter_storage.ports import ImageStore
from demeter_storage.ports.streams import Digest, Payload

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
SHA256_METADATA: Final = f"{RESERVED_METADATA_PREFIX}sha256"
CONTENT_TYPE_METADATA: Final = f"{RESERVED_METADATA_PREFIX}content-type"
"""The declared content type, kept because some servers (SeaweedFS) replace
``application/octet-stream`` with a guess from the key's extension."""
DELETE_BATCH: Final = 1000
"""S3's limit of keys per DeleteObjects request."""


class S3ImageStore(ImageStore):
    """Objects in one S3 bucket.

    Args:
        bucket: the bucket's name.
        client: a ready boto3 S3 client; built from ``config`` when None. A
            given client is not closed by :meth:`aclose`; give it a connection
            pool of at least ``config.max_concurrency``.
        config: connection, credential and transfer settings.
        clock: returns the current time; injectable for tests.
    """

    def __init__(
        self,
        bucket: str,
        *,
        client: S3Client | None = None,
        config: S3Config | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.name = validate_bucket_name(bucket)
        self.config = config or S3Config()
        self._clock = clock
        self._owns_client = client is None
        self.client: S3Client = client if client is not None else build_s3_client(self.config)
        watch_client(self.client)  # botocore logs session tokens at DEBUG
        pool = getattr(self.client.meta.config, "max_pool_connections", None)
        if pool is not None and pool < self.config.max_concurrency:
            logger.warning(
                "the S3 client's connection pool (%s) is smaller than max_concurrency (%s): "
                "connections will be dropped and reopened; build the client with "
                "Config(max_pool_connections=%s)",
                pool,
                self.config.max_concurrency,
                self.config.max_concurrency,
            )
        self._presigner = S3Presigner(self.name, self.client, self.config, clock)
        self._bucket = S3Bucket(
            self.name,
            self.client,
            self._call,
            endpoint_url=self.config.endpoint_url,
            sort_listings_here=self.config.sorts_listings,
        )
        self._threads = ThreadPoolExecutor(
            self.config.max_concurrency, thread_name_prefix=f"demeter-s3-{bucket}"
        )

    def __repr__(self) -> str:
        return f"S3ImageStore(bucket={self.name!r}, config={self.config!r})"

    async def aclose(self) -> None:
        """Stop the store's threads (and close the client it built)."""
        self._threads.shutdown(wait=False, cancel_futures=True)
        if self._owns_client:
            self.client.close()

    async def _call(
        self, operation: str, fn: Callable[..., Any], *, key: str | None = None, **kwargs: Any
    ) -> Any:
        """Run one boto3 call in the store's threads, translating its errors."""
        try:
            return await self._in_executor(functools.partial(fn, **kwargs))
        except Exception as exc:
            raise translate(exc, operation=operation, bucket=self.name, key=key) from exc

    async def _in_executor(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` (local work: reading, hashing) in the store's threads."""
        return await asyncio.get_running_loop().run_in_executor(self._threads, fn)

    # Writing

    async def _put(
        self,
        key: str,
        payload: Payload,
        content_type: str,
        metadata: dict[str, str],
        *,
        if_absent: bool = False,
    ) -> ObjectInfo:
        # S3's If-None-Match: * makes the server refuse the write if the key exists.
        condition: dict[str, Any] = {"IfNoneMatch": "*"} if if_absent else {}
        data = payload.in_memory
        if data is not None and len(data) <= self.config.multipart_threshold:
            return await self._put_single(key, data, content_type, metadata, condition)
        digest = Digest()
        part_size = self.config.part_size
        file = payload.rewound_file() if payload.in_memory is None else None
        reader: PartSource
        if file is not None and payload.size_hint is not None and hasattr(file, "readinto"):
            if payload.size_hint <= self.config.multipart_threshold:
                return await self._put_single(
                    key, await payload.read_all(), content_type, metadata, condition
                )
            reader = FileParts(file, digest, self._in_executor)
        else:
            # Chunks of one part each: the parts are then the chunks themselves.
            chunks = PartReader(payload.chunks(part_size), digest)
            head = await chunks.read(self.config.multipart_threshold)
            threshold = self.config.multipart_threshold
            more = await chunks.read(part_size) if len(head) == threshold else b""
            if not more:
                return await self._put_single(key, head, content_type, metadata, condition)
            chunks.unread(more)
            chunks.unread(head)
            del head, more
            reader = chunks
        try:
            etag = await upload_parts(
                functools.partial(self._call, key=key),
                self.client,
                bucket=self.name,
                key=key,
                content_type=content_type,
                metadata=_stored_metadata(metadata, content_type, None),
                reader=reader,
                part_size=self.config.part_size,
                concurrency=self.config.multipart_concurrency,
                complete_options=condition,
            )
        except CompletionRefused as refused:
            # Perhaps this put's own earlier attempt (completed, its answer lost):
            # give that object the SHA-256 it never got, for the caller to compare.
            await self._conditions().finish_own_object(
                key,
                refused.expected_etag,
                lambda key, etag: self._record_sha256(
                    key, etag, digest.sha256, content_type, metadata
                ),
            )
            raise
        etag = await self._record_sha256(key, etag, digest.sha256, content_type, metadata)
        return self._info(
            key,
            size=digest.size,
            content_type=content_type,
            sha256=digest.sha256,
            etag=etag,
            metadata=metadata,
        )

    async def _put_single(
        self,
        key: str,
        data: bytes,
        content_type: str,
        metadata: dict[str, str],
        condition: dict[str, Any],
    ) -> ObjectInfo:
        def hash_and_put() -> tuple[str, dict[str, Any]]:
            # One worker-thread job: a hop between threads costs as much as the hashing.
            # The SHA-256 goes into metadata; on the wire botocore's CRC32 protects
            # the bytes (the server checks it, cheaper for both sides).
            sha256 = hashlib.sha256(data).hexdigest()
            response = self.client.put_object(
                Bucket=self.name,
                Key=key,
                Body=data,
                ContentType=content_type,
                Metadata=_stored_metadata(metadata, content_type, sha256),
                ChecksumAlgorithm="CRC32",
                **condition,
            )
            return sha256, dict(response)

        sha256, response = await self._call("PutObject", hash_and_put, key=key)
        return self._info(
            key,
            size=len(data),
            content_type=content_type,
            sha256=sha256,
            etag=response.get("ETag"),
            metadata=metadata,
        )

    async def _record_sha256(
        self, key: str, etag: str, sha256: str, content_type: str, metadata: dict[str, str]
    ) -> str:
        """Add the whole object's SHA-256 to a multipart object's metadata.

        It is only known once every part was read, after S3 fixed the metadata;
        a server-side copy onto itself (conditional on the ETag, so that a
        concurrent overwrite is never clobbered) adds it. Should the copy fail,
        the object is complete and correct; only its recorded SHA-256 is missing.
        """
        try:
            response = await self._call(
                "CopyObject",
                self.client.copy_object,
                key=key,
                Bucket=self.name,
                Key=key,
                CopySource={"Bucket": self.name, "Key": key},
                CopySourceIfMatch=etag,
                MetadataDirective="REPLACE",
                ContentType=content_type,
                Metadata=_stored_metadata(metadata, content_type, sha256),
                # The copy's own full-object checksum replaces the per-part composite.
                ChecksumAlgorithm="CRC32",
            )
        except StorageError as exc:
            logger.warning("could not record the SHA-256 of %r in %r: %s", key, self.name, exc)
            return etag
        return str(response.get("CopyObjectResult", {}).get("ETag", etag))

    def _info(
        self,
        key: str,
        *,
        size: int,
        content_type: str | None,
        sha256: str | None,
        etag: str | None,
        metadata: dict[str, str],
        last_modified: datetime | None = None,
    ) -> ObjectInfo:
        return ObjectInfo(
            key=key,
            size=size,
            content_type=content_type,
            sha256=sha256,
            etag=etag,
            last_modified=last_modified or self._clock(),
            metadata=metadata,
        )

    # Reading

    def _describe(self, key: str, response: dict[str, Any]) -> ObjectInfo:
        stored = response.get("Metadata", {})
        sha256 = stored.get(SHA256_METADATA)
        user = {k: v for k, v in stored.items() if not k.startswith(RESERVED_METADATA_PREFIX)}
        return self._info(
            key,
            size=int(response["ContentLength"]),
            content_type=stored.get(CONTENT_TYPE_METADATA) or response.get("ContentType"),
            sha256=sha256 if isinstance(sha256, str) and _SHA256_HEX.match(sha256) else None,
            etag=response.get("ETag"),
            metadata=user,
            last_modified=response.get("LastModified"),
        )

    async def _head(self, key: str) -> ObjectInfo:
        response = await self._call(
            "HeadObject", self.client.head_object, key=key, Bucket=self.name, Key=key
        )
        return self._describe(key, response)

    async def _get(self, key: str) -> bytes:
        def get_and_read() -> bytes:
            body = self.client.get_object(Bucket=self.name, Key=key)["Body"]
            try:
                data: bytes = body.read()
            finally:
                body.close()
            return data

        result: bytes = await self._call("GetObject", get_and_read, key=key)
        return result

    async def _stream(self, key: str, chunk_size: int) -> AsyncIterator[bytes]:
        # The first part streams while the next ones are fetched in parallel,
        # each conditional on the first's ETag: the reader never mixes the bytes
        # of two versions of the object, and an object of one part takes one request.
        part_size = self.config.part_size
        first = await self._call(
            "GetObject",
            functools.partial(open_first_part, self.client, self.name, key),
            key=key,
            part_size=part_size,
            amount=chunk_size,
        )
        body, received, size, etag = first.body, first.received, first.size, first.etag
        rest: RangedParts | None = None
        if received < size:
            rest = RangedParts(
                functools.partial(self._read_part, key, etag),
                start=received,
                end=size,
                part_size=part_size,
                concurrency=self.config.multipart_concurrency,
            )
            rest.start()
        cutter = ChunkCutter(chunk_size)
        try:
            chunk = first.head
            while chunk:
                for piece in cutter.cut(chunk):
                    yield piece
                chunk = await self._call("GetObject", body.read, key=key, amt=chunk_size)
            if rest is not None:
                async for part in rest:
                    for piece in cutter.cut(part):
                        yield piece
            if tail := cutter.rest():
                yield tail
        finally:
            body.close()
            if rest is not None:
                await rest.aclose()

    async def _read_part(self, key: str, etag: str, begin: int, stop: int) -> bytes:
        try:
            data: bytes = await self._call(
                "GetObject",
                functools.partial(read_part, self.client, self.name, key),
                key=key,
                etag=etag,
                byte_range=(begin, stop),
            )
        except StorageError as exc:
            if is_replaced(exc.__cause__):
                raise replaced_while_read(self.name, key) from exc
            raise
        return data

    async def _list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        async for info in self._bucket.objects(prefix):
            yield info

    # Deleting

    async def _delete(self, key: str) -> None:
        await self._call(
            "DeleteObject", self.client.delete_object, key=key, Bucket=self.name, Key=key
        )

    def _conditions(self) -> S3Conditions:
        return S3Conditions(
            self.name,
            self.client,
            self._call,
            describe=self._describe,
            clock=self._clock,
            part_size=self.config.part_size,
        )

    async def _delete_if_match(self, key: str, etag: str) -> None:
        await self._conditions().delete_if_match(key, etag)

    async def _copy(self, source: str, target: str, *, if_absent: bool) -> ObjectInfo:
        # Server-side, pinned to the source's ETag; create-only through a
        # conditional multipart completion (see s3_conditions).
        return await self._conditions().copy(source, target, if_absent=if_absent)

    async def _delete_many(self, keys: builtins.list[str]) -> None:
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            response = await self._call(
                "DeleteObjects",
                self.client.delete_objects,
                Bucket=self.name,
                Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
            )
            errors = response.get("Errors", [])
            if errors:
                shown = ", ".join(f"{e.get('Key')!r}: {e.get('Code')}" for e in errors[:5])
                raise StorageError(
                    f"S3 DeleteObjects in bucket {self.name!r} left {len(errors)} object(s): "
                    f"{shown}; retry the delete"
                )

    # URLs and the bucket itself

    async def _presign(self, key: str, expires_in: int, method: HttpMethod) -> PresignedUrl:
        return self._presigner.url(key, expires_in, method)

    async def _presign_put(self, key: str, expires_in: int, content_type: str) -> PresignedUrl:
        return self._presigner.put_url(key, expires_in, content_type)

    async def _presign_post(
        self, key: str, content_type: str, max_size: int, expires_in: int
    ) -> PresignedPost:
        return self._presigner.post(key, content_type, max_size, expires_in)

    # Lifecycle: written into the bucket's configuration; the server enforces it.

    async def _apply_lifecycle(self, policy: LifecyclePolicy) -> None:
        await self._bucket.apply_lifecycle(policy)

    async def _get_lifecycle(self) -> LifecyclePolicy:
        return await self._bucket.lifecycle()

    async def _sweep(self, now: datetime, dry_run: bool) -> builtins.list[ObjectInfo]:
        return []  # S3 enforces the bucket's lifecycle configuration itself

    async def ensure_bucket(self) -> bool:
        """Create the bucket if it does not exist; return whether it was created.

        Raises:
            ConfigurationError: the credentials may not read or create the bucket.
        """
        return await self._bucket.ensure()


def _stored_metadata(
    metadata: dict[str, str], content_type: str, sha256: str | None
) -> dict[str, str]:
    stored = {**metadata, CONTENT_TYPE_METADATA: content_type}
    if sha256 is not None:
        stored[SHA256_METADATA] = sha256
    return stored
