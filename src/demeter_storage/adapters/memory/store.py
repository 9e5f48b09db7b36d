"""An in-memory :class:`~demeter_storage.ports.ImageStore` for tests and development.

Each instance has its own objects and its own URL-signing secret: nothing is
shared between instances, so tests never leak into one another. It is also the
reference model the contract state machine compares other stores against.
"""

from __future__ import annotations

import builtins
import hashlib
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from itertools import count

import attrs

from demeter_storage.adapters.shared.url_signing import UrlSigner
from demeter_storage.domain.errors import ObjectChanged, ObjectExists, ObjectNotFound
from demeter_storage.domain.objects import (
    HttpMethod,
    ObjectInfo,
    PresignedPost,
    PresignedUrl,
    etag_of,
    same_etag,
    utc_now,
)
from demeter_storage.ports import ImageStore
from demeter_storage.ports.streams import Digest, Payload

_instances = count(1)


@attrs.frozen
class _Stored:
    data: bytes
    info: ObjectInfo


class InMemoryImageStore(ImageStore):
    """Objects kept in a dict. Safe under concurrent asyncio tasks.

    Args:
        name: the bucket name it stands in for (a unique one by default).
        base_url: where its presigned URLs point (``memory://{name}`` by default);
            :meth:`verify_url` checks them.
        clock: returns the current time; injectable for tests.
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        base_url: str | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.name = name or f"memory-{next(_instances)}"
        self._objects: dict[str, _Stored] = {}
        self._clock = clock
        self._signer = UrlSigner(
            secrets.token_bytes(32), base_url or f"memory://{self.name}", self.name, clock
        )

    def __repr__(self) -> str:
        return f"InMemoryImageStore(name={self.name!r}, objects={len(self._objects)})"

    async def verify_url(self, url: str, method: str = "GET") -> str:
        """Return the key a URL from :meth:`presign` grants ``method`` on.

        Raises:
            InvalidSignature: tampered, expired, for another method or another store.
        """
        return self._signer.verify(url, method)

    async def url_signer(self) -> UrlSigner:
        """The signer behind :meth:`presign` (the HTTP server verifies requests with it)."""
        return self._signer

    async def _put(
        self,
        key: str,
        payload: Payload,
        content_type: str,
        metadata: dict[str, str],
        *,
        if_absent: bool = False,
    ) -> ObjectInfo:
        data = payload.in_memory
        if data is None:
            digest = Digest()
            parts = [digest.update(chunk) async for chunk in payload.chunks()]
            data = b"".join(parts)
            sha256 = digest.sha256
        else:
            sha256 = hashlib.sha256(data).hexdigest()
        info = ObjectInfo(
            key=key,
            size=len(data),
            content_type=content_type,
            sha256=sha256,
            etag=etag_of(sha256),
            last_modified=self._clock(),
            metadata=metadata,
        )
        # One assignment after the data is complete: a failing source leaves the old object.
        # The check and the assignment run without an await between them: atomic.
        if if_absent and key in self._objects:
            raise ObjectExists(key, self.name)
        self._objects[key] = _Stored(data, info)
        return info

    async def _copy(self, source: str, target: str, *, if_absent: bool) -> ObjectInfo:
        stored = self._lookup(source)
        if if_absent and target in self._objects:
            raise ObjectExists(target, self.name)
        info = attrs.evolve(stored.info, key=target, last_modified=self._clock())
        self._objects[target] = _Stored(stored.data, info)
        return info

    def _lookup(self, key: str) -> _Stored:
        try:
            return self._objects[key]
        except KeyError:
            raise ObjectNotFound(key, self.name) from None

    async def _get(self, key: str) -> bytes:
        return self._lookup(key).data

    async def _stream(self, key: str, chunk_size: int) -> AsyncIterator[bytes]:
        data = self._lookup(key).data
        for start in range(0, len(data), chunk_size):
            yield data[start : start + chunk_size]

    async def _head(self, key: str) -> ObjectInfo:
        return self._lookup(key).info

    async def _delete(self, key: str) -> None:
        self._objects.pop(key, None)

    async def _delete_if_match(self, key: str, etag: str) -> None:
        stored = self._objects.get(key)
        if stored is None:
            return
        if not same_etag(stored.info.etag, etag):
            raise ObjectChanged(key, self.name)
        del self._objects[key]

    async def _delete_many(self, keys: builtins.list[str]) -> None:
        for key in keys:
            self._objects.pop(key, None)

    async def _list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        for key in sorted(key for key in self._objects if key.startswith(prefix)):
            stored = self._objects.get(key)
            if stored is not None:  # deleted while the caller was iterating
                yield stored.info

    async def _presign(self, key: str, expires_in: int, method: HttpMethod) -> PresignedUrl:
        return self._signer.sign(key, expires_in, method)

    async def _presign_put(self, key: str, expires_in: int, content_type: str) -> PresignedUrl:
        return self._signer.sign(key, expires_in, "PUT", content_type)

    async def _presign_post(
        self, key: str, content_type: str, max_size: int, expires_in: int
    ) -> PresignedPost:
        return self._signer.sign_post(key, content_type, max_size, expires_in)
