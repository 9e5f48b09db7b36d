"""Fault injection: a store that fails the operations it is told to, and crashes at a step.

``FaultyStore`` wraps a store; ``Faults.checkpoint`` is the service's checkpoint
hook, raising ``Crash`` (the process dies) or an ordinary error at a named step.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator

from demeter_storage.domain.errors import StorageUnavailable
from demeter_storage.domain.objects import HttpMethod, ObjectInfo, PresignedUrl
from demeter_storage.ports import ImageStore
from demeter_storage.ports.streams import Payload


class FaultyStore(ImageStore):
    """Delegates to ``inner``; operations named in ``failing`` raise StorageUnavailable."""

    def __init__(self, inner: ImageStore) -> None:
        self.inner = inner
        self.name = inner.name
        self.failing: set[str] = set()

    def _check(self, operation: str) -> None:
        if operation in self.failing or "*" in self.failing:
            raise StorageUnavailable(f"injected outage of {operation}")

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def _put(
        self,
        key: str,
        payload: Payload,
        content_type: str,
        metadata: dict[str, str],
        *,
        if_absent: bool = False,
    ) -> ObjectInfo:
        self._check("put")
        return await self.inner.put(
            key, payload, content_type=content_type, metadata=metadata, if_absent=if_absent
        )

    async def _copy(self, source: str, target: str, *, if_absent: bool) -> ObjectInfo:
        self._check("copy")
        return await self.inner.copy(source, target, if_absent=if_absent)

    async def _get(self, key: str) -> bytes:
        self._check("get")
        return await self.inner.get(key)

    async def _stream(self, key: str, chunk_size: int) -> AsyncIterator[bytes]:
        self._check("get")
        async for chunk in self.inner.stream(key, chunk_size=chunk_size):
            yield chunk

    async def _head(self, key: str) -> ObjectInfo:
        self._check("head")
        return await self.inner.head(key)

    async def _delete(self, key: str) -> None:
        self._check("delete")
        await self.inner.delete(key)

    async def _delete_many(self, keys: builtins.list[str]) -> None:
        self._check("delete")
        await self.inner.delete_many(keys)

    async def _delete_if_match(self, key: str, etag: str) -> None:
        self._check("delete")
        await self.inner.delete(key, if_match=etag)

    def _list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        self._check("list")
        return self.inner.list(prefix)

    async def _presign(self, key: str, expires_in: int, method: HttpMethod) -> PresignedUrl:
        return await self.inner.presign(key, expires_in=expires_in, method=method)

    async def _presign_put(self, key: str, expires_in: int, content_type: str) -> PresignedUrl:
        return await self.inner.presign(
            key, expires_in=expires_in, method="PUT", content_type=content_type
        )


class Crash(BaseException):
    """The process dies here: nothing after this point runs, no cleanup either."""


class Faults:
    """A checkpoint hook: at the step in ``step``, once, a crash or an error."""

    def __init__(self) -> None:
        self.step: tuple[str, str] | None = None

    async def checkpoint(self, name: str) -> None:
        if self.step is not None and self.step[1] == name:
            kind, _ = self.step
            self.step = None
            if kind == "crash":
                raise Crash(name)
            raise RuntimeError(f"injected error after {name}")
