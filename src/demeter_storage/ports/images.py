"""The object-storage port: :class:`ImageStore`, the contract every store adapter fulfils.

Its public methods check every argument (keys, content types, metadata,
expiries, data types) *before* any I/O and then call the protected
``_``-methods that an adapter implements; so an adapter only ever sees valid,
NFC-normalised input, and a bad argument never costs a request or leaves
anything behind.
"""

from __future__ import annotations

import abc
import builtins
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import datetime, timedelta
from types import TracebackType
from typing import Self

from demeter_storage.domain.errors import ConfigurationError, ObjectNotFound, ValidationError
from demeter_storage.domain.keys import validate_key, validate_prefix
from demeter_storage.domain.lifecycle import (
    LifecyclePolicy,
    is_expired,
    warn_unenforceable,
)
from demeter_storage.domain.objects import (
    DEFAULT_CONTENT_TYPE,
    HttpMethod,
    ObjectInfo,
    PresignedPost,
    PresignedUrl,
    utc_now,
    validate_content_type,
    validate_expires_in,
    validate_metadata,
    validate_method,
)
from demeter_storage.ports.streams import DEFAULT_CHUNK_SIZE, Payload, PutData


def _validate_chunk_size(chunk_size: object) -> int:
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool):
        raise TypeError(f"chunk_size must be an int, got {type(chunk_size).__name__}")
    if chunk_size < 1:
        raise ValidationError(f"chunk_size must be at least 1 byte, got {chunk_size}")
    return chunk_size


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"if_absent must be a bool, got {type(value).__name__}")
    return value


def _validate_keys(keys: object) -> builtins.list[str]:
    if isinstance(keys, str | bytes) or not isinstance(keys, Iterable):
        raise TypeError("keys must be an iterable of str (a list or tuple), not a single key")
    return [validate_key(key) for key in keys]


class ImageStore(abc.ABC):
    """Asynchronous object storage bound to one bucket (or root directory).

    The contract, which :mod:`demeter_storage.testing` checks for any adapter:

    * Keys are ``/``-separated segments (see :func:`~demeter_storage.domain.keys.validate_key`);
      an invalid key raises :class:`~demeter_storage.domain.errors.ValidationError`
      before any I/O, a non-str key ``TypeError``.
    * Every read method (``get``, ``stream``, ``head``) raises
      :class:`~demeter_storage.domain.errors.ObjectNotFound` for a missing key;
      ``exists`` returns False instead.
    * ``put`` replaces an existing object atomically: readers see the old or the
      new bytes, never a mix, and a failure part-way leaves the old object (or
      nothing) in place. With ``if_absent=True`` it only creates: it raises
      :class:`~demeter_storage.domain.errors.ObjectExists` and writes nothing if
      an object is stored under the key, checked atomically by the store (S3's
      ``If-None-Match: *``). ``copy`` follows the same rules.
    * ``delete`` and ``delete_many`` are idempotent: deleting a missing key is fine.
      ``delete(key, if_match=etag)`` deletes only that version of the object and
      raises :class:`~demeter_storage.domain.errors.ObjectChanged` for another.
    * A presigned PUT URL pins its content type and only creates: the server
      refuses it for a key that holds an object.
    * Failures are raised as :class:`~demeter_storage.domain.errors.StorageError`
      subclasses; no library exception escapes.

    Stores may hold resources (threads, connections): close them with
    :meth:`aclose` or ``async with``.
    """

    name: str
    """The bucket (or root directory name) the store is bound to."""

    _lifecycle_policy: LifecyclePolicy | None = None

    async def put(
        self,
        key: str,
        data: PutData,
        *,
        content_type: str,
        metadata: Mapping[str, str] | None = None,
        if_absent: bool = False,
    ) -> ObjectInfo:
        """Store ``data`` under ``key``, replacing any object there.

        Args:
            key: where to store it.
            data: ``bytes``, a binary file object (read from its current position)
                or an async iterable of bytes. Files and iterables are streamed,
                never read whole into memory.
            content_type: the MIME type to serve it with.
            metadata: user metadata, see
                :func:`~demeter_storage.domain.objects.validate_metadata`.
            if_absent: only create the object; never replace one.

        Returns:
            What was stored, with its size and SHA-256.

        Raises:
            ObjectExists: ``if_absent`` and an object is stored under ``key``
                (nothing was written).
        """
        valid_key = validate_key(key)
        valid_type = validate_content_type(content_type)
        valid_metadata = validate_metadata(metadata)
        return await self._put(
            valid_key, Payload.of(data), valid_type, valid_metadata, if_absent=_flag(if_absent)
        )

    async def copy(
        self, source_key: str, target_key: str, *, if_absent: bool = False
    ) -> ObjectInfo:
        """Copy an object, with its content type and metadata, to another key of this store.

        On S3 the server copies the bytes (nothing passes through this process).

        Args:
            source_key: what to copy.
            target_key: where to; replaced atomically.
            if_absent: only create ``target_key``; never replace an object there.

        Returns:
            What was stored under ``target_key``.

        Raises:
            ObjectNotFound: nothing is stored under ``source_key``.
            ObjectExists: ``if_absent`` and an object is stored under ``target_key``.
        """
        source = validate_key(source_key)
        target = validate_key(target_key)
        if source == target:
            raise ValidationError(f"cannot copy {source!r} onto itself; choose another target key")
        return await self._copy(source, target, if_absent=_flag(if_absent))

    async def get(self, key: str) -> bytes:
        """Return the whole object. Prefer :meth:`stream` for large objects."""
        return await self._get(validate_key(key))

    def stream(self, key: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> AsyncIterator[bytes]:
        """Iterate over the object in chunks of at most ``chunk_size`` bytes.

        The key is checked at once; ``ObjectNotFound`` is raised when iteration starts.
        """
        return self._stream(validate_key(key), _validate_chunk_size(chunk_size))

    async def head(self, key: str) -> ObjectInfo:
        """Return what the store knows about the object, without its bytes."""
        return await self._head(validate_key(key))

    async def exists(self, key: str) -> bool:
        """Return whether an object is stored under ``key``."""
        valid_key = validate_key(key)
        try:
            await self._head(valid_key)
        except ObjectNotFound:
            return False
        return True

    async def delete(self, key: str, *, if_match: str | None = None) -> None:
        """Delete the object; deleting a missing key is not an error.

        Args:
            key: what to delete.
            if_match: an ETag (from ``head``, ``put`` or ``list``): delete only
                that version of the object, checked atomically by the store.

        Raises:
            ObjectChanged: ``if_match`` and another version is stored (nothing
                was deleted).
        """
        valid_key = validate_key(key)
        if if_match is None:
            await self._delete(valid_key)
            return
        if not isinstance(if_match, str) or not if_match.strip('"'):
            raise ValidationError(f"if_match must be an ETag, got {if_match!r}")
        await self._delete_if_match(valid_key, if_match)

    async def delete_many(self, keys: Iterable[str]) -> None:
        """Delete every key given (all are checked before the first delete)."""
        valid_keys = list(dict.fromkeys(_validate_keys(keys)))
        if valid_keys:
            await self._delete_many(valid_keys)

    def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        """Iterate over the objects whose keys start with ``prefix``, in key order."""
        return self._list(validate_prefix(prefix))

    async def presign(
        self,
        key: str,
        *,
        expires_in: int | timedelta,
        method: HttpMethod = "GET",
        content_type: str | None = None,
    ) -> PresignedUrl:
        """Return a URL that allows ``method`` on ``key`` for ``expires_in`` (1 s to 7 days).

        Presigning does not check that the object exists (a PUT URL is for one
        that does not yet). A PUT URL pins ``content_type`` and only creates:
        the request must carry the URL's :attr:`~PresignedUrl.headers`
        (``Content-Type`` and ``If-None-Match: *``), and the server refuses it
        (412) if an object is stored under ``key``, so it can never replace one.

        Raises:
            ValidationError: an invalid key, lifetime or method; a PUT without
                ``content_type``, or a GET with one.
        """
        valid_key = validate_key(key)
        seconds = validate_expires_in(expires_in)
        valid_method = validate_method(method)
        if valid_method == "GET":
            if content_type is not None:
                raise ValidationError("only PUT URLs pin a content type; leave content_type out")
            return await self._presign(valid_key, seconds, valid_method)
        if content_type is None:
            raise ValidationError(
                "a PUT URL pins the content type of what it uploads; pass content_type"
            )
        return await self._presign_put(valid_key, seconds, validate_content_type(content_type))

    async def presign_post(
        self, key: str, *, content_type: str, max_size: int, expires_in: int | timedelta
    ) -> PresignedPost:
        """Return an HTML form upload of ``key`` (S3's presigned POST).

        The form's policy pins the exact key and content type and accepts 1 to
        ``max_size`` bytes until ``expires_in`` (1 s to 7 days) has passed; the
        server (S3, or :mod:`demeter_storage.web.app` for the local and in-memory
        stores) refuses any other upload.

        Raises:
            ValidationError: an invalid key, content type, size or lifetime.
        """
        if isinstance(max_size, bool) or not isinstance(max_size, int):
            raise TypeError(f"max_size must be an int, got {type(max_size).__name__}")
        if max_size < 1:
            raise ValidationError(f"max_size must be at least 1 byte, got {max_size}")
        return await self._presign_post(
            validate_key(key),
            validate_content_type(content_type),
            max_size,
            validate_expires_in(expires_in),
        )

    async def apply_lifecycle(self, policy: LifecyclePolicy) -> None:
        """Apply the rules of ``policy`` that cover this store's bucket.

        Applying the same policy twice changes nothing. S3 stores write the
        bucket's lifecycle configuration (keeping rules they do not manage) and
        the server enforces it; other stores keep the policy and enforce it in
        :meth:`sweep`, ignoring (with a warning) what only S3 can do.
        """
        if not isinstance(policy, LifecyclePolicy):
            raise TypeError(f"policy must be a LifecyclePolicy, got {type(policy).__name__}")
        await self._apply_lifecycle(policy.for_bucket(self.name))

    async def get_lifecycle(self) -> LifecyclePolicy:
        """The lifecycle rules this store applies (those it manages, on S3)."""
        return await self._get_lifecycle()

    async def sweep(
        self, now: datetime | None = None, *, dry_run: bool = False
    ) -> builtins.list[ObjectInfo]:
        """Delete the objects whose lifecycle expiry has passed; return them.

        With ``dry_run`` nothing is deleted: the objects that would go are
        returned. On S3 the server enforces the rules and nothing is removed here.

        Args:
            now: the time to judge expiry against (timezone-aware; default: now).
            dry_run: only report.
        """
        if now is not None and now.tzinfo is None:
            raise ValidationError("now must be timezone-aware; use datetime.now(UTC)")
        return await self._sweep(now or utc_now(), dry_run)

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most stores hold nothing
        """Release the store's resources. The default does nothing."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    # The adapter's side: arguments arrive checked and normalised.

    @abc.abstractmethod
    async def _put(
        self,
        key: str,
        payload: Payload,
        content_type: str,
        metadata: dict[str, str],
        *,
        if_absent: bool = False,
    ) -> ObjectInfo: ...

    async def _copy(self, source: str, target: str, *, if_absent: bool) -> ObjectInfo:
        # Stores without a server-side copy stream the bytes through.
        info = await self._head(source)
        return await self._put(
            target,
            Payload.of(self._stream(source, DEFAULT_CHUNK_SIZE)),
            info.content_type or DEFAULT_CONTENT_TYPE,
            dict(info.metadata),
            if_absent=if_absent,
        )

    async def _get(self, key: str) -> bytes:
        return b"".join([chunk async for chunk in self._stream(key, DEFAULT_CHUNK_SIZE)])

    @abc.abstractmethod
    def _stream(self, key: str, chunk_size: int) -> AsyncIterator[bytes]: ...

    @abc.abstractmethod
    async def _head(self, key: str) -> ObjectInfo: ...

    @abc.abstractmethod
    async def _delete(self, key: str) -> None: ...

    async def _delete_many(self, keys: builtins.list[str]) -> None:
        for key in keys:
            await self._delete(key)

    @abc.abstractmethod
    async def _delete_if_match(self, key: str, etag: str) -> None: ...

    @abc.abstractmethod
    def _list(self, prefix: str) -> AsyncIterator[ObjectInfo]: ...

    @abc.abstractmethod
    async def _presign(self, key: str, expires_in: int, method: HttpMethod) -> PresignedUrl: ...

    @abc.abstractmethod
    async def _presign_put(self, key: str, expires_in: int, content_type: str) -> PresignedUrl: ...

    async def _presign_post(
        self, key: str, content_type: str, max_size: int, expires_in: int
    ) -> PresignedPost:
        raise ConfigurationError(
            f"{type(self).__name__} cannot take direct uploads (presigned POST); use the "
            "S3, local or in-memory store"
        )

    # Lifecycle: by default the store keeps the policy and enforces it in sweep().

    async def _apply_lifecycle(self, policy: LifecyclePolicy) -> None:
        warn_unenforceable(policy, self.name)
        self._lifecycle_policy = policy

    async def _get_lifecycle(self) -> LifecyclePolicy:
        return self._lifecycle_policy or LifecyclePolicy()

    async def _sweep(self, now: datetime, dry_run: bool) -> builtins.list[ObjectInfo]:
        policy = await self._get_lifecycle()
        rules = [rule for rule in policy.rules if rule.expire_after_days is not None]
        if not rules:
            return []
        expired = [info async for info in self._list("") if is_expired(info, rules, now)]
        if expired and not dry_run:
            await self._delete_many([info.key for info in expired])
        return expired
