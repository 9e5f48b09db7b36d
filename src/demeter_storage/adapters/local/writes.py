"""One write to the local store: a hidden temporary file that becomes the object on commit.

The commit order (data fsynced, sidecar replaced, data renamed over the
object, directory fsynced) is the crash-consistency protocol described in
:mod:`demeter_storage.adapters.local.fs`.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from datetime import datetime

from demeter_storage.adapters.local.fs import (
    Blocked,
    SafeTree,
    Sidecar,
    Taken,
    Version,
    object_info,
    write_all,
)
from demeter_storage.domain.objects import ObjectInfo
from demeter_storage.ports.streams import Digest


class TempWriter:
    """One in-progress write: a hidden temporary file that becomes the object on commit.

    Methods run in worker threads; a lock makes :meth:`abort` wait for a write
    or commit still running in another thread, so cleanup never races it.
    """

    def __init__(self, tree: SafeTree, segments: list[str], name: str) -> None:
        self._tree = tree
        self._name = name
        self._lock = threading.Lock()
        self._dir_fd = tree.open_dir(segments, create=True)
        try:
            self._fd, self._temp = tree.create_temp(self._dir_fd)
        except BaseException:
            os.close(self._dir_fd)
            raise
        self._done = False
        self.digest = Digest()

    def write(self, chunk: bytes) -> None:
        """Append ``chunk`` and account for it in the digest."""
        with self._lock:
            if self._done:
                raise RuntimeError("write after the temporary file was closed")
            self.digest.update(chunk)
            write_all(self._fd, chunk)

    def commit(
        self,
        key: str,
        content_type: str,
        metadata: dict[str, str],
        now: datetime,
        *,
        if_absent: bool = False,
    ) -> ObjectInfo:
        """Make the written data the object, with its metadata, atomically.

        Raises:
            Taken: ``if_absent`` and something is stored under the name already.
        """
        with self._lock:
            tree, dir_fd = self._tree, self._dir_fd
            if tree.durable:
                os.fsync(self._fd)
            st = os.fstat(self._fd)
            version = Version(
                ino=st.st_ino,
                size=st.st_size,
                mtime_ns=st.st_mtime_ns,
                sha256=self.digest.sha256,
                content_type=content_type,
                last_modified=now,
                metadata=metadata,
            )
            with tree.commit_lock(dir_fd):
                current = tree.current_stat(dir_fd, self._name)
                if current is not None and stat.S_ISDIR(current.st_mode):
                    raise Blocked("the key is a prefix of other keys (a directory is there)")
                if current is not None and if_absent:
                    # Checked under the directory's commit lock, which every write
                    # and delete of the name takes: nothing can slip in before the rename.
                    raise Taken(self._name)
                previous = (
                    tree.version_of(dir_fd, self._name, current)
                    if current is not None and stat.S_ISREG(current.st_mode)
                    else None
                )
                versions = [version] if previous is None else [version, previous]
                tree.write_sidecar(dir_fd, self._name, Sidecar(versions=versions))
                os.rename(self._temp, self._name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                self._done = True
                tree.sync_dir(dir_fd)
            self._close()
            return object_info(key, st, version)

    def abort(self) -> None:
        """Remove the temporary file unless the commit happened; safe to call twice."""
        with self._lock:
            if not self._done:
                self._done = True
                with contextlib.suppress(OSError):
                    os.unlink(self._temp, dir_fd=self._dir_fd)
            self._close()

    def _close(self) -> None:
        for fd in ("_fd", "_dir_fd"):
            value = getattr(self, fd, None)
            if value is not None:
                setattr(self, fd, None)
                with contextlib.suppress(OSError):
                    os.close(value)
