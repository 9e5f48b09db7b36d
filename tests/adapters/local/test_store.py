"""Behaviour of the local store beyond the shared contract: atomicity, crashes, sidecars."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import signal
import sys
import textwrap
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from demeter_storage import (
    ConfigurationError,
    LocalImageStore,
    ObjectNotFound,
    StorageError,
    ValidationError,
)
from demeter_storage.adapters.local import fs as _local_fs


def _visible_and_hidden(root: Path) -> tuple[list[str], list[str]]:
    visible, hidden = [], []
    for path in root.rglob("*"):
        if path.is_file():
            rel = str(path.relative_to(root))
            (
                hidden if any(p.startswith(".") for p in path.relative_to(root).parts) else visible
            ).append(rel)
    return sorted(visible), sorted(hidden)


async def test_objects_are_plain_files_with_hidden_sidecars(tmp_path: Path) -> None:
    store = LocalImageStore(tmp_path)
    await store.put("s1/a.jpg", b"jpeg bytes", content_type="image/jpeg", metadata={"k": "v"})
    assert (tmp_path / "s1" / "a.jpg").read_bytes() == b"jpeg bytes"
    visible, hidden = _visible_and_hidden(tmp_path)
    assert visible == ["s1/a.jpg"]
    assert hidden == ["s1/.a.jpg.meta.json"]


async def test_a_failing_source_leaves_no_temporary_file(tmp_path: Path) -> None:
    store = LocalImageStore(tmp_path)

    async def broken() -> AsyncIterator[bytes]:
        yield b"partial data"
        raise OSError("network gone")

    with pytest.raises(OSError, match="network gone"):
        await store.put("s1/a.jpg", broken(), content_type="image/jpeg")
    assert _visible_and_hidden(tmp_path) == ([], [])


async def test_a_cancelled_put_leaves_no_temporary_file(tmp_path: Path) -> None:
    store = LocalImageStore(tmp_path)
    started = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b"first chunk"
        started.set()
        await asyncio.sleep(3600)
        yield b"never"  # pragma: no cover

    task = asyncio.create_task(store.put("s1/a.jpg", slow(), content_type="image/jpeg"))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _visible_and_hidden(tmp_path) == ([], [])


async def test_a_crash_between_sidecar_and_data_rename_keeps_old_object_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalImageStore(tmp_path)
    await store.put("s1/a.jpg", b"old", content_type="image/jpeg", metadata={"v": "old"})
    real_rename = os.rename

    def rename_then_crash(src: str, dst: str, **kwargs: int) -> None:
        if dst == "a.jpg":  # the commit point: the data rename
            raise OSError(errno.EIO, "simulated crash before the data rename")
        real_rename(src, dst, **kwargs)

    monkeypatch.setattr(_local_fs.os, "rename", rename_then_crash)
    with pytest.raises(StorageError):
        await store.put("s1/a.jpg", b"new!", content_type="image/png", metadata={"v": "new"})
    monkeypatch.undo()
    # The sidecar now describes the new version first; the old data still finds its own entry.
    info = await store.head("s1/a.jpg")
    assert await store.get("s1/a.jpg") == b"old"
    assert (info.size, info.content_type, dict(info.metadata)) == (3, "image/jpeg", {"v": "old"})
    await store.put("s1/a.jpg", b"newest", content_type="image/webp")
    assert (await store.head("s1/a.jpg")).content_type == "image/webp"


async def test_metadata_survives_a_copy_of_the_tree(tmp_path: Path) -> None:
    await LocalImageStore(tmp_path / "a").put(
        "s1/a.jpg", b"copied", content_type="image/jpeg", metadata={"k": "v"}
    )
    shutil.copytree(tmp_path / "a", tmp_path / "b")  # new inodes, same mtimes
    info = await LocalImageStore(tmp_path / "b").head("s1/a.jpg")
    assert (info.content_type, dict(info.metadata)) == ("image/jpeg", {"k": "v"})
    assert info.sha256 is not None


async def test_a_file_placed_by_hand_is_served_with_a_guessed_type(tmp_path: Path) -> None:
    (tmp_path / "s1").mkdir()
    (tmp_path / "s1" / "manual.png").write_bytes(b"png?")
    store = LocalImageStore(tmp_path)
    info = await store.head("s1/manual.png")
    assert (info.size, info.content_type, info.sha256) == (4, "image/png", None)
    assert [i.key async for i in store.list()] == ["s1/manual.png"]
    (tmp_path / "s1" / ".manual.png.meta.json").write_text("{not json")
    assert (await store.head("s1/manual.png")).sha256 is None


async def test_a_key_cannot_pass_through_an_object_or_replace_a_directory(
    tmp_path: Path,
) -> None:
    store = LocalImageStore(tmp_path)
    await store.put("a/b", b"file", content_type="image/jpeg")
    with pytest.raises(ValidationError, match="a/b/c"):
        await store.put("a/b/c", b"x", content_type="image/jpeg")
    with pytest.raises(ValidationError, match="prefix of other keys"):
        await store.put("a", b"x", content_type="image/jpeg")
    with pytest.raises(ObjectNotFound):
        await store.get("a")
    await store.delete("a")
    assert await store.get("a/b") == b"file"
    assert _visible_and_hidden(tmp_path)[1] == ["a/.b.meta.json"]


async def test_reading_a_missing_root_finds_nothing(tmp_path: Path) -> None:
    store = LocalImageStore(tmp_path / "not-yet")
    assert [info async for info in store.list()] == []
    assert not await store.exists("s1/a.jpg")
    await store.delete("s1/a.jpg")
    assert not (tmp_path / "not-yet").exists()


async def test_remove_leftovers_reclaims_stale_temp_files_and_orphan_sidecars(
    tmp_path: Path,
) -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    store = LocalImageStore(tmp_path, clock=lambda: now)
    await store.put("s1/kept.jpg", b"k", content_type="image/jpeg")
    session = tmp_path / "s1"
    old = (now - timedelta(hours=2)).timestamp()
    for name in (".tmp-crashed", ".gone.jpg.meta.json", ".tmp-fresh"):
        (session / name).write_bytes(b"left behind")
    for name in (".tmp-crashed", ".gone.jpg.meta.json"):
        os.utime(session / name, (old, old))
    os.utime(session / ".kept.jpg.meta.json", (old, old))
    os.utime(session / ".tmp-fresh", (now.timestamp(), now.timestamp()))
    assert await store.remove_leftovers() == 2
    assert sorted(p.name for p in session.iterdir()) == [
        ".kept.jpg.meta.json",
        ".tmp-fresh",
        "kept.jpg",
    ]
    assert (await store.head("s1/kept.jpg")).sha256 is not None


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (errno.EACCES, ConfigurationError),
        (errno.EROFS, ConfigurationError),
        (errno.ENOSPC, StorageError),
        (errno.ENAMETOOLONG, ValidationError),
        (errno.EIO, StorageError),
    ],
)
async def test_os_errors_become_typed_errors_and_leave_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: int, expected: type[Exception]
) -> None:
    store = LocalImageStore(tmp_path)

    def failing_write(fd: int, data: bytes) -> int:
        raise OSError(error, os.strerror(error))

    monkeypatch.setattr(_local_fs.os, "write", failing_write)
    with pytest.raises(expected) as caught:
        await store.put("s1/a.jpg", b"data", content_type="image/jpeg")
    assert "s1/a.jpg" in str(caught.value)
    monkeypatch.undo()
    assert _visible_and_hidden(tmp_path) == ([], [])


async def test_an_unwritable_root_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(_local_fs.os, "makedirs", denied)
    with pytest.raises(ConfigurationError, match="permission denied"):
        await LocalImageStore(tmp_path / "root").put("s/a.jpg", b"x", content_type="image/jpeg")


def test_root_must_be_a_path() -> None:
    with pytest.raises(TypeError, match="root"):
        LocalImageStore(42)  # type: ignore[arg-type]


_CRASHING_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from demeter_storage import LocalImageStore

    async def source():
        yield b"x" * 65536
        sys.stdout.write("writing\\n"); sys.stdout.flush()
        await asyncio.sleep(3600)
        yield b"never"

    asyncio.run(LocalImageStore(sys.argv[1]).put("s1/big.jpg", source(), content_type="image/jpeg"))
    """
)


async def test_a_killed_writer_leaves_no_partial_object(tmp_path: Path) -> None:
    store = LocalImageStore(tmp_path)
    await store.put("s1/big.jpg", b"previous version", content_type="image/jpeg")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CRASHING_WRITER, str(tmp_path), stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    assert await process.stdout.readline() == b"writing\n"
    process.send_signal(signal.SIGKILL)
    await process.wait()
    assert await store.get("s1/big.jpg") == b"previous version"
    assert [info.key async for info in store.list()] == ["s1/big.jpg"]
    visible, hidden = _visible_and_hidden(tmp_path)
    assert visible == ["s1/big.jpg"]
    assert len([name for name in hidden if "/.tmp-" in name]) == 1  # hidden, never listed
    later = LocalImageStore(tmp_path, clock=lambda: datetime.now(UTC) + timedelta(hours=2))
    assert await later.remove_leftovers() == 1
    assert _visible_and_hidden(tmp_path)[1] == ["s1/.big.jpg.meta.json"]
