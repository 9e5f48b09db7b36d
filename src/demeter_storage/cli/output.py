"""Where ``download`` writes: a file written whole or not at all, or stdout byte for byte."""

from __future__ import annotations

import contextlib
import functools
import os
import select
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path


class UsageError(Exception):
    """Bad usage or input (exit code 2)."""


def output_path(key: str, output: str | None) -> Path:
    """Where ``download`` writes: ``output`` (inside it, if a directory) or the file name."""
    name = key.rsplit("/", 1)[-1]
    target = Path(output or name)
    return target / name if output and target.is_dir() else target


def stdout_writer() -> Callable[[bytes], None]:
    """A function writing bytes whole to standard output, whatever kind of file it is.

    ``sys.stdout.buffer.write`` may write only part of the bytes and say so
    (unbuffered, ``PYTHONUNBUFFERED=1``) or fail on a pipe another process made
    non-blocking; this one writes everything, waiting for the reader as needed.

    Raises:
        UsageError: standard output is closed.
    """
    stream = sys.stdout
    if stream is None:
        raise UsageError("standard output is closed; write to a file with -o PATH")
    stream.flush()
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # a stand-in without a descriptor (tests)
        return functools.partial(_write_whole, stream.buffer.write)
    return functools.partial(_write_whole_fd, fd)


def _write_whole_fd(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [])  # a non-blocking pipe is full: wait for the reader
            continue
        view = view[written:]


def _write_whole(write: Callable[[memoryview], int | None], data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = write(view)
        if not written:
            raise OSError(f"standard output accepted none of {len(view)} bytes")
        view = view[written:]


async def write_atomically(target: Path, chunks: AsyncIterator[bytes]) -> None:
    """Write ``chunks`` to a temporary file beside ``target``, then rename it over ``target``.

    Raises:
        UsageError: ``target`` cannot be written (named in the message, not the
            temporary file).
    """
    directory = target.parent if str(target.parent) else Path()
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=directory)
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(handle, "wb") as file:
            async for chunk in chunks:
                file.write(chunk)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        if isinstance(exc, OSError):
            raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from exc
        raise
