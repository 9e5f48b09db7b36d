"""Synchronous, symlink-proof file operations under one root directory.

Every path is walked one segment at a time from a descriptor of the root with
``O_NOFOLLOW``, so no symbolic link (planted anywhere inside the root) is ever
followed, whatever happens to the tree between two calls. Files are only read
if they are regular files with a single link (a hard link planted inside the
root could otherwise expose a file from outside it).

An object ``a/b.jpg`` lives at ``root/a/b.jpg``; its content type, metadata and
SHA-256 live beside it in ``root/a/.b.jpg.meta.json``. A valid key segment never
starts with a dot, so sidecars and temporary files (``.tmp-*``) can never be
mistaken for objects.

Crash consistency of a write: the data goes to a temporary file (fsync), then
the sidecar is replaced (fsync, rename), then the data is renamed over the
object (the commit point), then the directory is fsynced. The sidecar keeps the
previous version's entry too, each entry naming the inode and size of the data
it describes; so whatever instant a crash strikes, the data on disk finds its
own metadata.
"""

from __future__ import annotations

import contextlib
import errno
import json
import mimetypes
import os
import stat
import threading
import unicodedata
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Final

import attrs
import cattrs

from demeter_storage.domain.keys import validate_segment
from demeter_storage.domain.objects import DEFAULT_CONTENT_TYPE, ObjectInfo, etag_of

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

TEMP_PREFIX: Final = ".tmp-"
SIDECAR_SUFFIX: Final = ".meta.json"
_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CREATE_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_BLOCKED_ERRNOS: Final = frozenset({errno.ELOOP, errno.ENOTDIR, errno.EMLINK})


class Taken(Exception):
    """A create-only write found an object under its name."""


class Changed(Exception):
    """A conditional delete found another version of the object."""


class Blocked(Exception):
    """The path is not usable: missing, a symlink, or a file where a directory must be."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@attrs.frozen
class Version:
    """Metadata of one version of an object's data, matched to it by inode and size."""

    ino: int
    size: int
    mtime_ns: int
    sha256: str
    content_type: str
    last_modified: datetime
    metadata: dict[str, str] = attrs.Factory(dict)

    def describes(self, st: os.stat_result) -> bool:
        """Whether this entry belongs to the data file with status ``st``.

        The inode identifies our own file; size and modification time identify
        it after the tree was copied elsewhere with its timestamps.
        """
        same_size = self.size == st.st_size
        return same_size and (self.ino == st.st_ino or self.mtime_ns == st.st_mtime_ns)


@attrs.frozen
class Sidecar:
    """The content of a ``.{name}.meta.json`` file: newest version first."""

    versions: list[Version]
    format: int = 1


_converter = cattrs.Converter()
_converter.register_structure_hook(datetime, lambda value, _: datetime.fromisoformat(value))
_converter.register_unstructure_hook(datetime, lambda value: value.isoformat())


def sidecar_name(name: str) -> str:
    """The file name of ``name``'s sidecar."""
    return f".{name}{SIDECAR_SUFFIX}"


def object_info(key: str, st: os.stat_result, version: Version | None) -> ObjectInfo:
    """Describe the data file ``st`` of ``key``, with its metadata when known."""
    if version is None:
        # A file placed in the tree by hand, or whose sidecar was lost: what the
        # file system alone can tell.
        guessed = mimetypes.guess_type(key)[0] or DEFAULT_CONTENT_TYPE
        return ObjectInfo(
            key=key,
            size=st.st_size,
            content_type=guessed,
            sha256=None,
            etag=f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"',
            last_modified=datetime.fromtimestamp(st.st_mtime, UTC),
        )
    return ObjectInfo(
        key=key,
        size=st.st_size,
        content_type=version.content_type,
        sha256=version.sha256,
        etag=etag_of(version.sha256),
        last_modified=version.last_modified,
        metadata=version.metadata,
    )


@attrs.frozen
class Entry:
    """A directory entry that may hold objects: a subdirectory (no stat) or an object file."""

    name: str
    stat: os.stat_result | None
    version: Version | None

    @property
    def is_dir(self) -> bool:
        """Whether the entry is a subdirectory."""
        return self.stat is None


class SafeTree:
    """File operations confined to ``root``; all of them blocking (run them in a thread).

    Args:
        root: the absolute path of the root directory.
        durable: fsync data, sidecars and directories (turn off only in tests).
    """

    def __init__(self, root: str, *, durable: bool) -> None:
        self.root = root
        self.durable = durable
        # flock serialises commits across processes; this lock covers platforms without it.
        self._local_lock = threading.Lock()

    # Directories

    def open_root(self, *, create: bool) -> int:
        """Open the root directory, creating it (and its parents) when asked."""
        if create:
            os.makedirs(self.root, exist_ok=True)
        try:
            return os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise Blocked("the store's root directory does not exist yet") from None

    def open_dir(self, segments: list[str], *, create: bool) -> int:
        """Open the directory ``root/segments...`` without following any symlink.

        Raises:
            Blocked: it is missing (and ``create`` is false), or a segment is a
                symlink or a file.
        """
        fd = self.open_root(create=create)
        try:
            for segment in segments:
                parent = fd
                try:
                    fd = self._open_child_dir(parent, segment, create=create)
                finally:
                    os.close(parent)
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        return fd

    def _open_child_dir(self, parent: int, segment: str, *, create: bool) -> int:
        for _ in range(2):
            try:
                return os.open(segment, _DIR_FLAGS, dir_fd=parent)
            except FileNotFoundError:
                if not create:
                    raise Blocked(f"{segment!r} does not exist") from None
                with contextlib.suppress(FileExistsError):
                    os.mkdir(segment, 0o777, dir_fd=parent)
            except OSError as exc:
                if exc.errno in _BLOCKED_ERRNOS:
                    raise Blocked(
                        f"{segment!r} is a symbolic link or a file, and the store never "
                        "follows links or writes through files"
                    ) from None
                raise
        raise Blocked(f"{segment!r} vanished while it was being created")  # pragma: no cover

    @contextlib.contextmanager
    def commit_lock(self, dir_fd: int) -> Iterator[None]:
        """Serialise commits and deletes in one directory, across threads and processes."""
        with self._local_lock:
            if fcntl is not None:
                fcntl.flock(dir_fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                if fcntl is not None:
                    fcntl.flock(dir_fd, fcntl.LOCK_UN)

    # Reading

    def open_object(self, dir_fd: int, name: str) -> tuple[int, os.stat_result]:
        """Open a stored object for reading; Blocked unless it is a plain, single-link file."""
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            raise Blocked("no such object") from None
        except OSError as exc:
            if exc.errno in _BLOCKED_ERRNOS or exc.errno == errno.ENXIO:
                raise Blocked("not a plain file") from None
            raise
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            os.close(fd)
            raise Blocked("not a plain, single-link file")
        return fd, st

    def read_sidecar(self, dir_fd: int, name: str) -> Sidecar | None:
        """Return the sidecar of ``name``, or None if it is missing or unreadable."""
        try:
            fd, _ = self.open_object(dir_fd, sidecar_name(name))
        except (Blocked, OSError):
            return None
        try:
            with os.fdopen(fd, "rb") as file:
                return _converter.structure(json.loads(file.read()), Sidecar)
        except (ValueError, TypeError, KeyError, cattrs.BaseValidationError, OSError):
            return None

    def version_of(self, dir_fd: int, name: str, st: os.stat_result) -> Version | None:
        """The sidecar entry that describes the data file with status ``st``."""
        sidecar = self.read_sidecar(dir_fd, name)
        if sidecar is None:
            return None
        return next((v for v in sidecar.versions if v.describes(st)), None)

    def list_dir(self, segments: list[str]) -> list[Entry]:
        """Entries of a directory that may hold objects, files with their metadata.

        Skips dot-files (sidecars, temporary files), symlinks, special files,
        multi-link files and names that are not valid key segments.
        """
        try:
            fd = self.open_dir(segments, create=False)
        except Blocked:
            return []
        entries: list[Entry] = []
        try:
            with os.scandir(fd) as scan:
                for entry in scan:
                    name = unicodedata.normalize("NFC", entry.name)
                    if name.startswith(".") or entry.is_symlink() or not _valid_segment(name):
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        entries.append(Entry(name, None, None))
                    elif entry.is_file(follow_symlinks=False):
                        st = entry.stat(follow_symlinks=False)
                        if st.st_nlink == 1:
                            entries.append(Entry(name, st, self.version_of(fd, entry.name, st)))
        finally:
            os.close(fd)
        return entries

    # Writing

    def create_temp(self, dir_fd: int) -> tuple[int, str]:
        """Create an empty, hidden temporary file in the directory."""
        name = f"{TEMP_PREFIX}{uuid.uuid4().hex}"
        return os.open(name, _CREATE_FLAGS, 0o666, dir_fd=dir_fd), name

    def write_sidecar(self, dir_fd: int, name: str, sidecar: Sidecar) -> None:
        """Replace the sidecar of ``name`` atomically."""
        body = json.dumps(_converter.unstructure(sidecar), separators=(",", ":")).encode()
        fd, temp = self.create_temp(dir_fd)
        try:
            write_all(fd, body)
            if self.durable:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=dir_fd)
            raise
        os.close(fd)
        os.rename(temp, sidecar_name(name), src_dir_fd=dir_fd, dst_dir_fd=dir_fd)

    def current_stat(self, dir_fd: int, name: str) -> os.stat_result | None:
        """Status of whatever is at ``name`` now (links not followed), or None."""
        try:
            return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def remove(self, dir_fd: int, name: str) -> bool:
        """Unlink ``name`` if it is a plain, single-link file; return whether it was.

        Symlinks, directories and hard links are left alone: they are not objects
        the store could have written, and reads never see them either.
        """
        st = self.current_stat(dir_fd, name)
        if st is None or not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            return False
        try:
            os.unlink(name, dir_fd=dir_fd)
        except FileNotFoundError:
            return False
        return True

    def sync_dir(self, dir_fd: int) -> None:
        """Make renames and unlinks in the directory durable."""
        if self.durable:
            os.fsync(dir_fd)

    def walk_hidden(self, segments: list[str]) -> Iterator[tuple[list[str], str, os.stat_result]]:
        """Yield ``(dir_segments, name, stat)`` of every hidden file, depth first."""
        try:
            fd = self.open_dir(segments, create=False)
        except Blocked:
            return
        subdirs: list[str] = []
        try:
            with os.scandir(fd) as scan:
                for entry in scan:
                    if entry.is_symlink():
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        if not entry.name.startswith("."):
                            subdirs.append(entry.name)
                    elif entry.name.startswith("."):
                        yield segments, entry.name, entry.stat(follow_symlinks=False)
        finally:
            os.close(fd)
        for subdir in subdirs:
            yield from self.walk_hidden([*segments, subdir])


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write every byte of ``data`` to ``fd`` (``os.write`` may write less)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _valid_segment(name: str) -> bool:
    try:
        validate_segment(name)
    except ValueError:
        return False
    return True


def hidden_file_is_stale(name: str, st: os.stat_result, cutoff_ns: int) -> bool:
    """Whether a hidden file is a temporary file left by a crashed write before the cutoff."""
    return name.startswith(TEMP_PREFIX) and st.st_mtime_ns < cutoff_ns


def orphan_sidecar_target(name: str) -> str | None:
    """The object name a sidecar file belongs to, or None if ``name`` is no sidecar."""
    if name.startswith(".") and name.endswith(SIDECAR_SUFFIX) and not name.startswith(TEMP_PREFIX):
        return name[1 : -len(SIDECAR_SUFFIX)]
    return None
