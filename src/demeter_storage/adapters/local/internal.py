"""The local store's own files under ``root/.demeter``: its URL signing key and lifecycle policy.

They live beside the objects so that every process sharing the root shares them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from typing import Final

from demeter_storage.adapters.local import fs
from demeter_storage.adapters.local.fs import SafeTree
from demeter_storage.domain.secrets import Secret

INTERNAL_DIR: Final = ".demeter"
SIGNING_KEY_FILE: Final = "signing-key"
LIFECYCLE_FILE: Final = "lifecycle.json"


def write_internal(tree: SafeTree, name: str, body: bytes) -> None:
    """Replace ``root/.demeter/{name}`` atomically and durably."""
    dir_fd = tree.open_dir([INTERNAL_DIR], create=True)
    try:
        fd, temp = tree.create_temp(dir_fd)
        try:
            fs.write_all(fd, body)
            if tree.durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        tree.sync_dir(dir_fd)
    finally:
        os.close(dir_fd)


def read_internal(tree: SafeTree, name: str) -> bytes | None:
    """The content of ``root/.demeter/{name}``, or None if it is missing."""
    try:
        dir_fd = tree.open_dir([INTERNAL_DIR], create=False)
    except fs.Blocked:
        return None
    try:
        fd, _ = tree.open_object(dir_fd, name)
    except fs.Blocked:
        return None
    finally:
        os.close(dir_fd)
    with os.fdopen(fd, "rb") as file:
        return file.read()


def load_or_create_secret(tree: SafeTree) -> bytes:
    """The store's URL signing key, created (mode 0600) by the first process to need it."""
    dir_fd = tree.open_dir([INTERNAL_DIR], create=True)
    try:
        with contextlib.suppress(FileNotFoundError):
            return _read_secret(dir_fd)
        fd, temp = tree.create_temp(dir_fd)
        try:
            os.fchmod(fd, 0o600)
            fs.write_all(fd, secrets.token_hex(32).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        # link() fails if another process won the race; then its key is used.
        with contextlib.suppress(FileExistsError):
            os.link(temp, SIGNING_KEY_FILE, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        os.unlink(temp, dir_fd=dir_fd)
        return _read_secret(dir_fd)
    finally:
        os.close(dir_fd)


def _read_secret(dir_fd: int) -> bytes:
    fd = os.open(SIGNING_KEY_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    with os.fdopen(fd, "rb") as file:
        return bytes.fromhex(file.read().decode().strip())


def secret_bytes(value: Secret | str | bytes | None) -> bytes | None:
    """A configured signing secret as bytes (None: use the one in the root)."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, Secret):
        value = value.reveal()
    if isinstance(value, str):
        return value.encode()
    raise TypeError(f"signing_secret must be a Secret, str or bytes, got {type(value).__name__}")
