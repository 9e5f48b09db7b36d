"""A :class:`~demeter_storage.ports.ImageStore` on the local file system.

Objects live under one root directory and nowhere else: paths are walked
without following symbolic links (see :mod:`._local_fs`), writes are atomic and
durable (temporary file, fsync, rename), and presigned URLs are HMAC-signed so
that front-end code works the same against disk and S3.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import errno
import json
import os
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timedelta
from typing import Final, ParamSpec, TypeVar
from urllib.parse import quote

from demeter_storage.adapters.local import fs
from demeter_storage.adapters.local.internal import (
    INTERNAL_DIR,
    LIFECYCLE_FILE,
    load_or_create_secret,
    read_internal,
    secret_bytes,
    write_internal,
)
from demeter_storage.adapters.local.writes import TempWriter
from demeter_storage.adapters.shared.url_signing import UrlSigner
from demeter_storage.domain.errors import (
    ConfigurationError,
    ObjectChanged,
    ObjectExists,
    ObjectNotFound,
    StorageError,
    ValidationError,
)
from demeter_storage.domain.lifecycle import LifecyclePolicy, warn_unenforceable
from demeter_storage.domain.objects import (
    HttpMethod,
    ObjectInfo,
    PresignedPost,
    PresignedUrl,
    same_etag,
    utc_now,
)
from demeter_storage.domain.secrets import Secret
from demeter_storage.ports import ImageStore
from demeter_storage.ports.streams import Payload

DEFAULT_PUBLIC_BASE_URL: Final = "http://127.0.0.1:8765"
"""Where ``demeter-storage serve`` listens by default; local URLs point there."""


_P = ParamSpec("_P")
_T = TypeVar("_T")
_PERMISSION_ERRNOS: Final = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
_SPACE_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT})


def _split(key: str) -> tuple[list[str], str]:
    *segments, name = key.split("/")
    return segments, name


class LocalImageStore(ImageStore):
    """Objects as files under ``root``, with metadata in hidden sidecar files.

    Args:
        root: the directory that holds this store's objects (created on first write).
        name: the bucket name it stands for (the root's base name by default).
        base_url: where presigned URLs point; ``{DEFAULT_PUBLIC_BASE_URL}/{name}``
            by default, which is where ``demeter-storage serve`` serves them.
        signing_secret: the HMAC key for presigned URLs. By default a random key
            is created once in ``root/.demeter/signing-key`` (mode 0600), so URLs
            stay valid across restarts and across processes sharing the root.
        clock: returns the current time; injectable for tests.
        durable: fsync files and directories before a write returns. Turn it off
            only where losing recent writes on power loss does not matter (tests).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        name: str | None = None,
        base_url: str | None = None,
        signing_secret: Secret | str | bytes | None = None,
        clock: Callable[[], datetime] = utc_now,
        durable: bool = True,
    ) -> None:
        if not isinstance(root, str | os.PathLike):
            raise TypeError(f"root must be a path, got {type(root).__name__}")
        if not (os.supports_dir_fd >= {os.open, os.rename, os.unlink, os.mkdir}):
            raise ConfigurationError(  # pragma: no cover - POSIX has them
                "the local store needs dir_fd support (Linux, macOS, BSD); use another store"
            )
        self.root = os.path.abspath(os.fspath(root))
        self.name = name or os.path.basename(self.root.rstrip(os.sep)) or "root"
        self._tree = fs.SafeTree(self.root, durable=durable)
        self._clock = clock
        self._base_url = base_url or f"{DEFAULT_PUBLIC_BASE_URL}/{quote(self.name, safe='')}"
        self._configured_secret = secret_bytes(signing_secret)
        self._signer: UrlSigner | None = None

    def __repr__(self) -> str:
        return f"LocalImageStore(root={self.root!r}, name={self.name!r})"

    # Running blocking file operations, with errors translated

    async def _run(
        self, key: str, writing: bool, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs
    ) -> _T:
        with self._translated(key, writing=writing):
            return await asyncio.to_thread(fn, *args, **kwargs)

    @contextlib.contextmanager
    def _translated(self, key: str, *, writing: bool) -> Iterator[None]:
        try:
            yield
        except fs.Taken:
            raise ObjectExists(key, self.name) from None
        except fs.Changed:
            raise ObjectChanged(key, self.name) from None
        except fs.Blocked as exc:
            if writing:
                raise ValidationError(
                    f"cannot write {key!r} in {self.name!r}: {exc.reason}; use another key "
                    "or remove what is in the way"
                ) from None
            raise ObjectNotFound(key, self.name) from None
        except OSError as exc:
            raise self._os_error(key, exc) from exc

    def _os_error(self, key: str, exc: OSError) -> StorageError:
        where = f"{key!r} under {self.root!r}"
        if exc.errno in _PERMISSION_ERRNOS:
            return ConfigurationError(
                f"permission denied for {where}; give the process read and write access"
            )
        if exc.errno in _SPACE_ERRNOS:
            return StorageError(f"no space left for {where}; free disk space and retry")
        if exc.errno == errno.ENAMETOOLONG:
            return ValidationError(f"the path of {where} is too long for this file system")
        return StorageError(f"file system error for {where}: {exc.strerror or exc}")

    # The port

    async def _put(
        self,
        key: str,
        payload: Payload,
        content_type: str,
        metadata: dict[str, str],
        *,
        if_absent: bool = False,
    ) -> ObjectInfo:
        segments, name = _split(key)
        writer = await self._run(key, True, TempWriter, self._tree, segments, name)
        try:
            # Only the store's own file operations are translated: an error raised
            # by the caller's data source reaches the caller unchanged.
            data = payload.in_memory
            if data is not None:
                await self._run(key, True, writer.write, data)
            else:
                async for chunk in payload.chunks():
                    await self._run(key, True, writer.write, chunk)
            return await self._run(
                key,
                True,
                writer.commit,
                key,
                content_type,
                metadata,
                self._clock(),
                if_absent=if_absent,
            )
        except BaseException:
            # Synchronous on purpose: it must run even when the task is being
            # cancelled, and it waits for a write still running in a thread.
            writer.abort()
            raise

    def _open(self, key: str) -> tuple[int, os.stat_result, fs.Version | None]:
        segments, name = _split(key)
        dir_fd = self._tree.open_dir(segments, create=False)
        try:
            fd, st = self._tree.open_object(dir_fd, name)
            return fd, st, self._tree.version_of(dir_fd, name, st)
        finally:
            os.close(dir_fd)

    def _read_whole(self, key: str) -> bytes:
        fd, st, _ = self._open(key)
        try:
            parts = []
            while chunk := os.read(fd, max(st.st_size, 1 << 16)):
                parts.append(chunk)
            return b"".join(parts)
        finally:
            os.close(fd)

    def _describe(self, key: str) -> ObjectInfo:
        fd, st, version = self._open(key)
        os.close(fd)
        return fs.object_info(key, st, version)

    async def _get(self, key: str) -> bytes:
        return await self._run(key, False, self._read_whole, key)

    async def _stream(self, key: str, chunk_size: int) -> AsyncIterator[bytes]:
        fd, _, _ = await self._run(key, False, self._open, key)
        try:
            while chunk := await self._run(key, False, os.read, fd, chunk_size):
                yield chunk
        finally:
            os.close(fd)

    async def _head(self, key: str) -> ObjectInfo:
        return await self._run(key, False, self._describe, key)

    def _remove(self, key: str) -> None:
        segments, name = _split(key)
        try:
            dir_fd = self._tree.open_dir(segments, create=False)
        except fs.Blocked:
            return  # nothing of ours can be there
        try:
            with self._tree.commit_lock(dir_fd):
                removed = self._tree.remove(dir_fd, name)
                removed = self._tree.remove(dir_fd, fs.sidecar_name(name)) or removed
                if removed:
                    self._tree.sync_dir(dir_fd)
        finally:
            os.close(dir_fd)

    async def _delete(self, key: str) -> None:
        await self._run(key, True, self._remove, key)

    def _remove_if_match(self, key: str, etag: str) -> None:
        segments, name = _split(key)
        try:
            dir_fd = self._tree.open_dir(segments, create=False)
        except fs.Blocked:
            return
        try:
            with self._tree.commit_lock(dir_fd):
                try:
                    fd, st = self._tree.open_object(dir_fd, name)
                except fs.Blocked:
                    return  # nothing of ours is there
                os.close(fd)
                info = fs.object_info(key, st, self._tree.version_of(dir_fd, name, st))
                if not same_etag(info.etag, etag):
                    raise fs.Changed(name)
                removed = self._tree.remove(dir_fd, name)
                removed = self._tree.remove(dir_fd, fs.sidecar_name(name)) or removed
                if removed:
                    self._tree.sync_dir(dir_fd)
        finally:
            os.close(dir_fd)

    async def _delete_if_match(self, key: str, etag: str) -> None:
        await self._run(key, True, self._remove_if_match, key, etag)

    async def _list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        async for info in self._walk([], prefix):
            yield info

    async def _walk(self, segments: list[str], prefix: str) -> AsyncIterator[ObjectInfo]:
        entries = await self._run(prefix, False, self._tree.list_dir, segments)
        # Sorting directories as "name/" yields keys in plain string order.
        ordered = sorted(entries, key=lambda e: e.name + "/" if e.is_dir else e.name)
        for entry in ordered:
            key = "/".join([*segments, entry.name])
            if entry.stat is None:
                if (key + "/").startswith(prefix) or prefix.startswith(key + "/"):
                    async for info in self._walk([*segments, entry.name], prefix):
                        yield info
            elif key.startswith(prefix):
                yield fs.object_info(key, entry.stat, entry.version)

    async def _presign(self, key: str, expires_in: int, method: HttpMethod) -> PresignedUrl:
        signer = await self._url_signer()
        return signer.sign(key, expires_in, method)

    async def _presign_put(self, key: str, expires_in: int, content_type: str) -> PresignedUrl:
        signer = await self._url_signer()
        return signer.sign(key, expires_in, "PUT", content_type)

    async def _presign_post(
        self, key: str, content_type: str, max_size: int, expires_in: int
    ) -> PresignedPost:
        signer = await self._url_signer()
        return signer.sign_post(key, content_type, max_size, expires_in)

    # Beyond the port

    async def verify_url(self, url: str, method: str = "GET") -> str:
        """Return the key a URL from :meth:`presign` grants ``method`` on.

        Raises:
            InvalidSignature: tampered, expired, for another method, key or store.
        """
        signer = await self._url_signer()
        return signer.verify(url, method)

    async def url_signer(self) -> UrlSigner:
        """The signer behind :meth:`presign` (the HTTP server verifies requests with it)."""
        return await self._url_signer()

    async def remove_leftovers(self, older_than: timedelta = timedelta(hours=1)) -> int:
        """Remove what crashed writes left behind; return how many files went.

        That is hidden temporary files older than ``older_than`` and sidecars
        whose object is gone. Neither is ever visible as an object; this only
        reclaims their space.
        """
        cutoff_ns = int((self._clock() - older_than).timestamp() * 1e9)
        return await self._run("", True, self._remove_leftovers, cutoff_ns)

    def _remove_leftovers(self, cutoff_ns: int) -> int:
        removed = 0
        for segments, name, st in list(self._tree.walk_hidden([])):
            if st.st_mtime_ns >= cutoff_ns:
                continue
            target = fs.orphan_sidecar_target(name)
            if not fs.hidden_file_is_stale(name, st, cutoff_ns) and target is None:
                continue
            dir_fd = self._tree.open_dir(segments, create=False)
            try:
                with self._tree.commit_lock(dir_fd):
                    if target is not None and self._tree.current_stat(dir_fd, target):
                        continue
                    removed += self._tree.remove(dir_fd, name)
            finally:
                os.close(dir_fd)
        return removed

    # Lifecycle: the policy lives in root/.demeter/lifecycle.json, for every
    # process sharing the root; sweep() enforces it.

    async def _apply_lifecycle(self, policy: LifecyclePolicy) -> None:
        warn_unenforceable(policy, self.name)
        body = json.dumps(policy.to_dict(), indent=2, sort_keys=True).encode()
        await self._run("", True, write_internal, self._tree, LIFECYCLE_FILE, body)

    async def _get_lifecycle(self) -> LifecyclePolicy:
        body = await self._run("", False, read_internal, self._tree, LIFECYCLE_FILE)
        if body is None:
            return LifecyclePolicy()
        try:
            return LifecyclePolicy.from_dict(json.loads(body))
        except ValueError as exc:
            raise ConfigurationError(
                f"{self.root}/{INTERNAL_DIR}/{LIFECYCLE_FILE} is damaged ({exc}); "
                "apply the lifecycle policy again"
            ) from exc

    async def _sweep(self, now: datetime, dry_run: bool) -> builtins.list[ObjectInfo]:
        expired = await super()._sweep(now, dry_run)
        policy = await self._get_lifecycle()
        days = [r.abort_incomplete_uploads_after_days for r in policy.rules]
        abandon_after = min((d for d in days if d is not None), default=None)
        if abandon_after is not None and not dry_run:
            # The local store's incomplete uploads are the temporary files of
            # writes that never finished.
            cutoff_ns = int((now - timedelta(days=abandon_after)).timestamp() * 1e9)
            await self._run("", True, self._remove_leftovers, cutoff_ns)
        return expired

    async def _url_signer(self) -> UrlSigner:
        if self._signer is None:
            secret = self._configured_secret
            if secret is None:
                secret = await self._run("", True, load_or_create_secret, self._tree)
            self._signer = UrlSigner(secret, self._base_url, self.name, self._clock)
        return self._signer
