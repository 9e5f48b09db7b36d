"""No key, however crafted, reads, writes or deletes anything outside the local root.

The sandbox plants what an attacker with write access inside the root could
plant: directory and file symlinks pointing outside, a hard link to an outside
file, a FIFO. Outside the root sit canary files. Thousands of adversarial keys
then go through every store method; each call must succeed or raise a typed
StorageError, the outside tree must be byte-for-byte unchanged, and no read may
ever return a canary's bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from demeter_storage import LocalImageStore, StorageError

CANARY = b"CANARY-OUTSIDE-THE-ROOT"

PIECES = [
    "..",
    ".",
    "/",
    "\\",
    "\x00",
    "\n",
    "\r",
    "\t",
    " ",
    "~",
    "%2e%2e",
    "%2f",
    "a",
    "b.jpg",
    "\u00e9",
    "e\u0301",
    "\uff0e",
    "\uff0f",
    "\uff3c",
    "\u2025",
    "\u2024",
    "\u202e",
    "\u200b",
    "\u2215",
    "\u2044",
    "outside",
    "link",
    "dirlink",
    "filelink",
    "hardlink.jpg",
    "fifo",
    "sess",
    "etc",
    "passwd",
    "/etc/passwd",
    "C:",
    "C:\\Windows",
    "\udcff",
    "\U0001f331",
]

adversarial_keys = st.one_of(
    st.lists(st.sampled_from(PIECES), min_size=1, max_size=8).map("".join),
    st.lists(st.sampled_from(PIECES), min_size=1, max_size=4).map("/".join),
    st.text(max_size=40),
    st.sampled_from(
        [
            "dirlink/x.jpg",
            "dirlink/canary.txt",
            "sess/filelink",
            "sess/hardlink.jpg",
            "sess/fifo",
            "sess/dirlink/canary.txt",
            "../outside/canary.txt",
            "sess/../../outside/canary.txt",
            "sess/ok.jpg",
        ]
    ),
)


def _snapshot(path: Path) -> dict[str, tuple[str, str]]:
    result: dict[str, tuple[str, str]] = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = str(full.relative_to(path))
            if full.is_symlink():
                result[rel] = ("link", os.readlink(full))
            elif full.is_file():
                result[rel] = ("file", hashlib.sha256(full.read_bytes()).hexdigest())
            else:
                result[rel] = ("dir", "")
    return result


def _plant(base: Path) -> tuple[Path, Path]:
    outside, root = base / "outside", base / "root"
    (outside / "nested").mkdir(parents=True)
    (outside / "canary.txt").write_bytes(CANARY)
    (outside / "nested" / "canary.txt").write_bytes(CANARY)
    (root / "sess").mkdir(parents=True)
    (root / "dirlink").symlink_to(outside, target_is_directory=True)
    (root / "sess" / "dirlink").symlink_to(outside / "nested", target_is_directory=True)
    (root / "sess" / "filelink").symlink_to(outside / "canary.txt")
    os.link(outside / "canary.txt", root / "sess" / "hardlink.jpg")
    os.mkfifo(root / "sess" / "fifo")
    return outside, root


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("containment")


async def _exercise(store: LocalImageStore, key: str) -> list[bytes]:
    """Run every method on ``key``; return whatever bytes reads gave back."""
    seen: list[bytes] = []

    async def attempt(call: object) -> object:
        try:
            return await call  # type: ignore[misc]
        except StorageError:
            return None

    info = await attempt(store.put(key, b"written by the test", content_type="image/jpeg"))
    for read in (store.get(key),):
        data = await attempt(read)
        if isinstance(data, bytes):
            seen.append(data)
    with contextlib.suppress(StorageError):
        seen.append(b"".join([chunk async for chunk in store.stream(key)]))
    head = await attempt(store.head(key))
    if head is not None:
        assert head.size != len(CANARY) or info is not None
    await attempt(store.exists(key))
    try:
        async for listed in store.list(key):
            assert not listed.key.startswith(".")
    except StorageError:
        pass
    await attempt(store.presign(key, expires_in=60))
    await attempt(store.delete(key))
    await attempt(store.delete_many([key]))
    return seen


@settings(max_examples=5000, deadline=None)
@given(key=adversarial_keys)
def test_no_key_touches_anything_outside_the_root(workdir: Path, key: str) -> None:
    # A fresh sandbox per example: a put may legitimately replace a planted link.
    outside, root = _plant(Path(tempfile.mkdtemp(dir=workdir)))
    before = _snapshot(outside)
    store = LocalImageStore(root, durable=False)
    seen = asyncio.run(_exercise(store, key))
    assert all(CANARY not in data for data in seen), f"{key!r} read a file outside the root"
    assert _snapshot(outside) == before, f"{key!r} changed something outside the root"
    for dirpath, _, filenames in os.walk(root, followlinks=False):
        for name in filenames:
            real = os.path.realpath(os.path.join(dirpath, name))
            if not os.path.islink(os.path.join(dirpath, name)):
                assert real.startswith(str(root) + os.sep), f"{key!r} left {real}"
    shutil.rmtree(root.parent)


def test_planted_links_are_never_followed_nor_deleted(tmp_path: Path) -> None:
    outside, root = _plant(tmp_path)
    store = LocalImageStore(root, durable=False)

    async def scenario() -> None:
        for key in (
            "dirlink/canary.txt",
            "sess/filelink",
            "sess/hardlink.jpg",
            "sess/fifo",
            "sess/dirlink/canary.txt",
        ):
            assert not await store.exists(key)
            with pytest.raises(StorageError):
                await store.get(key)
            await store.delete(key)
        assert (root / "dirlink").is_symlink()
        assert (root / "sess" / "hardlink.jpg").exists()
        with pytest.raises(StorageError, match="symbolic link"):
            await store.put("dirlink/new.jpg", b"x", content_type="image/jpeg")
        listed = [info.key async for info in store.list()]
        assert not any(
            key.startswith(("dirlink", "sess/filelink", "sess/hardlink", "sess/fifo"))
            for key in listed
        )

    asyncio.run(scenario())
    assert (outside / "canary.txt").read_bytes() == CANARY
    assert not (outside / "new.jpg").exists()
