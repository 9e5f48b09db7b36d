"""Random (version 4) UUIDs for new records, drawn from a buffer of the OS's randomness.

``uuid.uuid4()`` calls ``os.urandom(16)``, which releases the GIL for the
``getrandom`` system call. On an event loop that shares the process with busy
threads (boto3's), every release can leave the loop waiting for the GIL: about
130 µs per ``upload_original`` at 16 concurrent uploads, profiled. Drawing
4 KiB at a time makes that one release per 256 ids; the bytes are the same
cryptographic randomness. A forked child starts with an empty buffer, so a
parent and its child never hand out the same id.
"""

from __future__ import annotations

import os
import threading
import uuid
from typing import Final

ID_BYTES: Final = 16
BUFFER_BYTES: Final = 4096
"""Randomness drawn from the OS at a time: 256 ids."""


class _RandomBuffer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bytes = b""
        self._offset = 0

    def take(self, size: int) -> bytes:
        with self._lock:
            if self._offset + size > len(self._bytes):
                self._bytes, self._offset = os.urandom(BUFFER_BYTES), 0
            start = self._offset
            self._offset = start + size
            return self._bytes[start : self._offset]


_buffer = _RandomBuffer()


def _start_afresh() -> None:
    global _buffer  # noqa: PLW0603 - replaced whole in a forked child, lock included
    _buffer = _RandomBuffer()


os.register_at_fork(after_in_child=_start_afresh)


def new_id() -> uuid.UUID:
    """A random version 4 UUID, as ``uuid.uuid4()`` makes, without a system call each time."""
    return uuid.UUID(bytes=_buffer.take(ID_BYTES), version=4)
