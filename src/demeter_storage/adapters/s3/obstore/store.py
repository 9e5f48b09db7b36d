"""An :class:`~demeter_storage.ports.ImageStore` on S3, on obstore (Rust, asyncio-native).

The same port as :class:`~demeter_storage.adapters.s3.store.S3ImageStore`, from the
same :class:`~demeter_storage.adapters.s3.config.S3Config`, storing objects
the same way (content type, user metadata and SHA-256 in the same metadata
fields), so that either adapter reads what the other wrote. Requests run on
obstore's Rust runtime, without a thread per request. Needs the ``fast``
extra (``pip install 'demeter-storage[fast]'``).

obstore's retries are off: wrap the store in
:class:`~demeter_storage.adapters.resilience.store.ResilientImageStore` for retries
and a circuit breaker, as with the boto3 adapter.

What obstore cannot do is done by the boto3 adapter on the same settings,
built on first use (:mod:`~demeter_storage.adapters.s3.obstore.control`): bucket
creation, lifecycle configuration, recording the SHA-256 of a streamed
multipart upload (known only once every part was sent; a conditional
server-side copy adds it), aborting the upload of a cancelled put, and the
conditional operations obstore lacks: create-only puts larger than one
request (obstore completes multipart uploads unconditionally), copies,
conditional deletes, and PUT URLs that sign their headers. Create-only puts
of one request are obstore's own (``mode="create"``).
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final, TypeVar

import obstore
from obstore import exceptions as obstore_exceptions

from demeter_storage.adapters.s3.config import S3Config
from demeter_storage.adapters.s3.obstore.config import build_obstore_store
from demeter_storage.adapters.s3.obstore.control import Boto3Companion
from demeter_storage.adapters.s3.obstore.errors import RANGE_NOT_SATISFIABLE, http_status, translate
from demeter_storage.adapters.s3.obstore.streams import HashedSource, sha256_of, start_after
from demeter_storage.adapters.s3.ranged_reads import ChunkCutter, RangedParts, replaced_while_read
from demeter_storage.adapters.s3.store import CONTENT_TYPE_METADATA, SHA256_METADATA
from demeter_storage.domain.buckets import validate_bucket_name
from demeter_storage.domain.errors import StorageError, ValidationError
from demeter_storage.domain.keys import is_addressable
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
from demeter_storage.ports.streams import Payload

if TYPE_CHECKING:
    from obstore import GetOptions, GetResult, ObjectMeta
    from obstore.store import S3Store

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

HEADER_NAMES: Final = frozenset(
    {
        "Cache-Control",
        "Content-Disposition",
        "Content-Encoding",
        "Content-Language",
        "Content-Type",
        "Storage-Class",
    }
)
"""Attributes obstore sends and returns as HTTP headers rather than as metadata."""
HEADER_ATTRIBUTES: Final = frozenset(name.lower() for name in HEADER_NAMES)
"""obstore matches attribute names case-insensitively: these can never be metadata keys."""
LIST_PAGE: Final = 1000
INITIATED_SLACK: Final = timedelta(seconds=5)
"""How much earlier than a cancelled put an upload it must abort may say it began
(servers keep whole seconds; clocks differ a little)."""
IGNORED_RANGE: Final = "non-partial response"
"""obstore's words when a server answers a ranged GET with the whole object."""
_SHA256_HEX: Final = re.compile(r"^[0-9a-f]{64}$")
_AMZ_DATE: Final = re.compile(r"[?&]X-Amz-Date=(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z")


class ObstoreImageStore(ImageStore):
    """Objects in one S3 bucket, through obstore.

    Args:
        bucket: the bucket's name.
        config: connection, credential and transfer settings, those of the boto3
            adapter. ``max_concurrency`` bounds the requests in flight;
            ``presign_stable_seconds`` is not supported (URLs are signed at now).
        store: a ready obstore ``S3Store`` for ``bucket``, with its retries off
            (``retry_config={"max_retries": 0}``); built from ``config`` when
            None. Give the matching ``config`` too: listing order, part sizes
            and what obstore cannot do (see the module's docs) come from it.
        clock: returns the current time; injectable for tests.
    """

    def __init__(
        self,
        bucket: str,
        *,
        config: S3Config | None = None,
        store: S3Store | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.name = validate_bucket_name(bucket)
        self.config = config or S3Config()
        self._clock = clock
        self.store: S3Store = (
            store if store is not None else build_obstore_store(bucket, self.config)
        )
        self.companion = Boto3Companion(self.name, self.config, clock)
        self._slots: asyncio.Semaphore | None = None
        self._slots_loop: asyncio.AbstractEventLoop | None = None
        # Signing with fixed keys is pure computation (microseconds): done inline.
        self._signs_inline = store is None and self.config.access_key_id is not None
        if self.config.presign_stable_seconds is not None:
            logger.warning(
                "ObstoreImageStore signs URLs at the current time: presign_stable_seconds=%s "
                "is ignored (S3ImageStore supports stable URLs)",
                self.config.presign_stable_seconds,
            )

    def __repr__(self) -> str:
        return f"ObstoreImageStore(bucket={self.name!r}, config={self.config!r})"

    async def aclose(self) -> None:
        """Close the boto3 companion, if one was built; obstore holds nothing to close."""
        await self.companion.aclose()

    async def ensure_bucket(self) -> bool:
        """Create the bucket if it does not exist; return whether it was created.

        Raises:
            ConfigurationError: the credentials may not read or create the bucket.
        """
        return await self.companion.ensure_bucket()

    def _limit(self) -> asyncio.Semaphore:
        """The semaphore bounding the requests in flight on the running loop."""
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots_loop is not loop:
            # A semaphore belongs to one loop; a store may outlive one (test runners).
            self._slots = asyncio.Semaphore(self.config.max_concurrency)
            self._slots_loop = loop
        return self._slots

    async def _call(
        self, operation: str, key: str | None, request: Callable[[], Awaitable[_T]]
    ) -> _T:
        """Send one request, within ``max_concurrency``, translating its errors."""
        try:
            async with self._limit():
                return await request()
        except Exception as exc:
            error = translate(exc, operation=operation, bucket=self.name, key=key)
            if error is exc:
                raise  # not obstore's: the caller's data source failed, say
            raise error from exc

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
        clashes = sorted(HEADER_ATTRIBUTES.intersection(metadata))
        if clashes:
            raise ValidationError(
                f"cannot store {key!r}: obstore sends the metadata key(s) {clashes} as HTTP "
                "headers, not as metadata; rename them (S3ImageStore can store them)"
            )
        threshold = self.config.multipart_threshold
        if if_absent and (payload.size_hint or 0) > threshold and payload.replayable:
            return await self._create_by_companion(key, payload, content_type, metadata)
        data = payload.in_memory
        source: HashedSource | None = None
        if data is None:
            source = HashedSource(payload.chunks(self.config.part_size), threshold)
            data = await source.read_ahead()
        if data is not None:
            sha256 = source.digest.sha256 if source is not None else await sha256_of(data)
            attributes = _attributes(content_type, metadata, sha256)
            # One request; create-only is obstore's own PutMode "create" (If-None-Match: *).
            etag = await self._send(key, data, attributes, create_only=if_absent)
            return self._info(key, len(data), content_type, sha256, etag, metadata)
        assert source is not None
        if if_absent:
            rest = Payload.of(source.unhashed_rest())
            return await self._create_by_companion(key, rest, content_type, metadata)
        since = datetime.now(UTC) - INITIATED_SLACK
        try:
            etag = await self._send(key, source.rest(), _attributes(content_type, metadata, None))
        except asyncio.CancelledError:
            # obstore aborts an upload that fails, but not one that is cancelled.
            await asyncio.shield(self.companion.abort_uploads(key, since))
            raise
        sha256 = source.digest.sha256
        if etag is not None:
            etag = await self.companion.record_sha256(key, etag, sha256, content_type, metadata)
        return self._info(key, source.digest.size, content_type, sha256, etag, metadata)

    async def _create_by_companion(
        self, key: str, payload: Payload, content_type: str, metadata: dict[str, str]
    ) -> ObjectInfo:
        """A create-only put too large for one request, as the boto3 store sends it.

        obstore's create mode is a single PUT (it would hold a stream whole in
        memory) and its multipart uploads complete unconditionally; the boto3
        store completes its multipart upload with ``If-None-Match: *``.
        """
        return await self.companion.store._put(key, payload, content_type, metadata, if_absent=True)

    async def _send(
        self,
        key: str,
        data: bytes | AsyncIterator[bytes],
        attributes: dict[str, str],
        *,
        create_only: bool = False,
    ) -> str | None:
        """One put: a single request for bytes up to the threshold, else multipart."""
        multipart = not isinstance(data, bytes) or len(data) > self.config.multipart_threshold
        assert not (multipart and create_only), (
            "obstore completes multipart uploads unconditionally"
        )
        result = await self._call(
            "MultipartUpload" if multipart else "PutObject",
            key,
            lambda: obstore.put_async(
                self.store,
                key,
                data,
                attributes=attributes,
                mode="create" if create_only else "overwrite",
                use_multipart=multipart,
                chunk_size=self.config.part_size,
                max_concurrency=self.config.multipart_concurrency,
            ),
        )
        return result["e_tag"]

    def _info(  # noqa: PLR0917 - one private helper, called positionally throughout
        self,
        key: str,
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

    async def _head(self, key: str) -> ObjectInfo:
        # A GET with the head option is a HEAD request that also returns the headers.
        result = await self._call(
            "HeadObject", key, lambda: obstore.get_async(self.store, key, options={"head": True})
        )
        attributes: dict[str, str] = dict(result.attributes)
        sha256 = attributes.get(SHA256_METADATA)
        return self._info(
            key,
            result.meta["size"],
            attributes.get(CONTENT_TYPE_METADATA) or attributes.get("Content-Type"),
            sha256 if sha256 is not None and _SHA256_HEX.match(sha256) else None,
            result.meta["e_tag"],
            _user_metadata(attributes),
            result.meta["last_modified"],
        )

    async def _get(self, key: str) -> bytes:
        async def get_all() -> bytes:
            result = await obstore.get_async(self.store, key)
            return (await result.bytes_async()).to_bytes()

        return await self._call("GetObject", key, get_all)

    async def _stream(self, key: str, chunk_size: int) -> AsyncIterator[bytes]:
        # The first part streams while the next ones are fetched in parallel,
        # each conditional on the first's ETag: the reader never mixes the bytes
        # of two versions of the object, and an object of one part takes one request.
        part_size = self.config.part_size
        first = await self._call("GetObject", key, lambda: self._open_first_part(key, part_size))
        size, etag = first.meta["size"], first.meta["e_tag"]
        rest: RangedParts | None = None
        if first.range[1] < size and etag is None:
            # Nothing to make the other parts' requests conditional on: one GET.
            first = await self._call("GetObject", key, lambda: obstore.get_async(self.store, key))
        elif first.range[1] < size and etag is not None:
            rest = RangedParts(
                functools.partial(self._read_part, key, etag),
                start=first.range[1],
                end=size,
                part_size=part_size,
                concurrency=self.config.multipart_concurrency,
            )
            rest.start()

        sources: list[AsyncIterator[bytes]] = [first.stream(min_chunk_size=chunk_size)]
        if rest is not None:
            sources.append(rest)
        cutter = ChunkCutter(chunk_size)
        try:
            for source in sources:
                async for piece in source:
                    for chunk in cutter.cut(piece):
                        yield chunk
            if tail := cutter.rest():
                yield tail
        except Exception as exc:
            error = translate(exc, operation="GetObject", bucket=self.name, key=key)
            if error is exc:
                raise
            raise error from exc
        finally:
            if rest is not None:
                await rest.aclose()

    async def _open_first_part(self, key: str, part_size: int) -> GetResult:
        try:
            return await obstore.get_async(self.store, key, options={"range": (0, part_size)})
        except obstore_exceptions.BaseError as exc:
            message = str(exc)
            # An empty object has no range; a server may ignore ranges (HTTP allows it).
            if http_status(message) != RANGE_NOT_SATISFIABLE and IGNORED_RANGE not in message:
                raise
        return await obstore.get_async(self.store, key)

    async def _read_part(self, key: str, etag: str, begin: int, stop: int) -> bytes:
        async def read() -> bytes:
            options: GetOptions = {"range": (begin, stop), "if_match": etag}
            result = await obstore.get_async(self.store, key, options=options)
            return (await result.bytes_async()).to_bytes()

        try:
            return await self._call("GetObject", key, read)
        except StorageError as exc:
            if isinstance(exc.__cause__, obstore_exceptions.PreconditionError):
                raise replaced_while_read(self.name, key) from exc
            raise

    async def _list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        if self.config.sorts_listings:
            collected = [info async for info in self._list_pages(prefix, ordered=False)]
            collected.sort(key=lambda info: info.key)
            for info in collected:
                yield info
        else:
            async for info in self._list_pages(prefix, ordered=True):
                yield info

    async def _list_pages(self, prefix: str, *, ordered: bool) -> AsyncIterator[ObjectInfo]:
        """The objects under ``prefix``, in the server's order.

        obstore lists whole path segments (``"s1"`` means ``"s1/"``): a prefix
        ending inside a segment lists its directory and keeps the matches. If
        the server lists in key order (``ordered``), that listing starts just
        before the prefix and stops after its last match.
        """
        directory = prefix.rpartition("/")[0]
        partial = not prefix.endswith("/") and prefix != ""
        offset = start_after(prefix) if ordered and partial else None
        try:
            pages = obstore.list(self.store, directory or None, offset=offset, chunk_size=LIST_PAGE)
        except Exception as exc:
            raise translate(exc, operation="ListObjectsV2", bucket=self.name) from exc
        while True:
            try:
                page: Sequence[ObjectMeta] = await self._call(
                    "ListObjectsV2", None, lambda: anext(pages)
                )
            except StopAsyncIteration:
                return
            for meta in page:
                path = meta["path"]
                if not path.startswith(prefix):
                    if ordered and partial and path > prefix:
                        return  # past the last key that can match
                    continue
                if is_addressable(path):  # else written by another tool, unaddressable here
                    yield self._info(
                        path, meta["size"], None, None, meta["e_tag"], {}, meta["last_modified"]
                    )

    # Deleting

    async def _delete(self, key: str) -> None:
        await self._call("DeleteObject", key, lambda: obstore.delete_async(self.store, key))

    async def _delete_if_match(self, key: str, etag: str) -> None:
        # obstore has no conditional delete: botocore sends it.
        await self.companion.store._delete_if_match(key, etag)

    async def _copy(self, source: str, target: str, *, if_absent: bool) -> ObjectInfo:
        # obstore's copy cannot pin the source's version nor returns the new ETag,
        # and its copy_if_not_exists needs the S3Store built for it (a given store
        # may not be): the boto3 store copies (see s3_conditions).
        return await self.companion.store._copy(source, target, if_absent=if_absent)

    async def _delete_many(self, keys: builtins.list[str]) -> None:
        # obstore sends DeleteObjects requests of up to 1,000 keys each.
        await self._call("DeleteObjects", None, lambda: obstore.delete_async(self.store, keys))

    # URLs

    async def _presign(self, key: str, expires_in: int, method: HttpMethod) -> PresignedUrl:
        lifetime = timedelta(seconds=expires_in)
        try:
            if self._signs_inline:
                url = obstore.sign(self.store, method, key, lifetime)
            else:  # fetching credentials may take a request: off the event loop
                url = await obstore.sign_async(self.store, method, key, lifetime)
        except Exception as exc:
            raise translate(exc, operation="presign", bucket=self.name, key=key) from exc
        return PresignedUrl(url=url, method=method, expires_at=self._signed_at(url) + lifetime)

    def _signed_at(self, url: str) -> datetime:
        """When obstore signed ``url`` (by its own clock): the expiry counts from then."""
        found = _AMZ_DATE.search(url)
        if found is None:
            return self._clock()
        # Not strptime: it costs ~40 µs a URL, several times obstore's signing.
        year, month, day, hour, minute, second = map(int, found.groups())
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)

    async def _presign_put(self, key: str, expires_in: int, content_type: str) -> PresignedUrl:
        # obstore cannot sign headers into a URL: the boto3 store's fast SigV4
        # signer does (content-type;host;if-none-match; local computation).
        return await self.companion.store._presign_put(key, expires_in, content_type)

    async def _presign_post(
        self, key: str, content_type: str, max_size: int, expires_in: int
    ) -> PresignedPost:
        # obstore has no presigned POST: botocore signs the form (local computation).
        return await self.companion.store._presign_post(key, content_type, max_size, expires_in)

    # Lifecycle: written into the bucket's configuration, as by the boto3 adapter.

    async def _apply_lifecycle(self, policy: LifecyclePolicy) -> None:
        await self.companion.apply_lifecycle(policy)

    async def _get_lifecycle(self) -> LifecyclePolicy:
        return await self.companion.get_lifecycle()

    async def _sweep(self, now: datetime, dry_run: bool) -> builtins.list[ObjectInfo]:
        return []  # S3 enforces the bucket's lifecycle configuration itself


def _attributes(content_type: str, metadata: dict[str, str], sha256: str | None) -> dict[str, str]:
    """What obstore sends: the Content-Type header and the metadata S3ImageStore stores."""
    attributes = {**metadata, "Content-Type": content_type, CONTENT_TYPE_METADATA: content_type}
    if sha256 is not None:
        attributes[SHA256_METADATA] = sha256
    return attributes


def _user_metadata(attributes: dict[str, str]) -> dict[str, str]:
    # obstore names the headers it knows in title case ("Content-Type"), and
    # metadata as the server sent it (lower case: HTTP/1 header names are folded).
    return {
        name: value
        for name, value in attributes.items()
        if name not in HEADER_NAMES and not name.startswith(RESERVED_METADATA_PREFIX)
    }
