"""The contract every :class:`~demeter_storage.ports.ImageStore` must pass.

Subclass :class:`ImageStoreContract` in a test module and give it a ``store``
fixture; every test below then runs against your store::

    class TestMyStore(ImageStoreContract):
        @pytest.fixture
        async def store(self):
            async with MyStore(...) as store:
                yield store

The tests are ``async``: they need pytest-asyncio (``asyncio_mode = "auto"``,
or strict mode with ``@pytest_asyncio.fixture`` on the ``store`` fixture).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import tracemalloc
import unicodedata
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest

from demeter_storage.domain.errors import ObjectNotFound, ValidationError
from demeter_storage.ports import ImageStore
from demeter_storage.testing.contract_conditions import ConditionContract
from demeter_storage.testing.contract_urls import PresignContract

MiB = 1024 * 1024

INVALID_KEYS: tuple[str, ...] = (
    "",
    "/",
    "/absolute.jpg",
    "trailing/",
    "double//slash.jpg",
    "..",
    "../escape.jpg",
    "s/../../escape.jpg",
    "s/..",
    "s/.hidden.jpg",
    ".hidden/a.jpg",
    "back\\slash.jpg",
    "s/nul\x00.jpg",
    "s/new\nline.jpg",
    "s/tab\t.jpg",
    "s/del\x7f.jpg",
    "s/rtl\u202eoverride.jpg",
    "s/zero\u200bwidth.jpg",
    "s/\uff0e\uff0e",  # fullwidth ".."
    "s/a\uff0fb.jpg",  # fullwidth solidus
    "s/a\uff3cb.jpg",  # fullwidth reverse solidus
    "s/\u2025",  # two-dot leader, NFKC ".."
    " s/leading-space.jpg",
    "s/trailing-space.jpg ",
    "s/" + "a" * 221,
    "s/trailing-dot.",
    "/".join(["seg"] * 300),
)


def pattern_chunk(index: int, size: int = MiB) -> bytes:
    """A deterministic, incompressible-looking chunk number ``index``."""
    seed = hashlib.sha256(index.to_bytes(8, "big")).digest()
    return (seed * (size // len(seed) + 1))[:size]


async def pattern_source(total: int, chunk: int = MiB) -> AsyncIterator[bytes]:
    """Yield ``total`` bytes of :func:`pattern_chunk` data, one chunk at a time."""
    index = 0
    sent = 0
    while sent < total:
        piece = pattern_chunk(index, min(chunk, total - sent))
        sent += len(piece)
        index += 1
        yield piece


def pattern_sha256(total: int, chunk: int = MiB) -> str:
    """The SHA-256 of ``total`` bytes of :func:`pattern_source`."""
    digest = hashlib.sha256()
    index = sent = 0
    while sent < total:
        piece = pattern_chunk(index, min(chunk, total - sent))
        digest.update(piece)
        sent += len(piece)
        index += 1
    return digest.hexdigest()


class _FailingSource:
    """An async iterable that yields some bytes and then fails."""

    def __init__(self, chunks: int) -> None:
        self.chunks = chunks

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._run()

    async def _run(self) -> AsyncIterator[bytes]:
        for index in range(self.chunks):
            yield pattern_chunk(index, 64 * 1024)
        raise RuntimeError("the data source broke")


@pytest.mark.asyncio
class ImageStoreContract(PresignContract, ConditionContract):
    """Tests every ImageStore must pass. Subclasses provide a ``store`` fixture."""

    keeps_objects_in_memory: ClassVar[bool] = False
    """Set True for stores that hold objects in this process (the memory check is skipped)."""

    large_object_size: ClassVar[int] = 64 * MiB
    stream_memory_limit: ClassVar[int] = 32 * MiB
    """Peak Python allocations allowed while putting or streaming the large object."""

    @pytest.fixture
    def store(self) -> ImageStore:
        """Override: return (or yield) the store under test, empty."""
        raise NotImplementedError("subclasses of ImageStoreContract provide a `store` fixture")

    async def test_put_then_get_returns_the_same_bytes(self, store: ImageStore) -> None:
        await store.put("s1/photo.jpg", b"\xff\xd8 some bytes", content_type="image/jpeg")
        assert await store.get("s1/photo.jpg") == b"\xff\xd8 some bytes"

    async def test_put_returns_size_sha256_and_content_type(self, store: ImageStore) -> None:
        data = b"x" * 1000
        info = await store.put("s1/a.png", data, content_type="image/png")
        assert info.key == "s1/a.png"
        assert info.size == 1000
        assert info.content_type == "image/png"
        assert info.sha256 == hashlib.sha256(data).hexdigest()

    async def test_head_describes_the_stored_object(self, store: ImageStore) -> None:
        data = b"head me"
        await store.put("s1/h.jpg", data, content_type="image/jpeg", metadata={"camera": "x1"})
        info = await store.head("s1/h.jpg")
        assert (info.key, info.size, info.content_type) == ("s1/h.jpg", 7, "image/jpeg")
        assert info.sha256 == hashlib.sha256(data).hexdigest()
        assert dict(info.metadata) == {"camera": "x1"}
        assert info.etag
        assert info.last_modified is not None
        assert info.last_modified.tzinfo is not None

    async def test_metadata_round_trips(self, store: ImageStore) -> None:
        metadata = {"camera": "Pixel 9", "gps-lat": "-12.5", "note": "a=b; c~!"}
        await store.put("s1/m.jpg", b"m", content_type="image/jpeg", metadata=metadata)
        assert dict((await store.head("s1/m.jpg")).metadata) == metadata
        # Listings may leave out what needs an extra request per object (S3's do).
        (listed,) = [info async for info in store.list("s1/m")]
        assert dict(listed.metadata) in (metadata, {})
        assert listed.content_type in ("image/jpeg", None)

    async def test_empty_object_round_trips(self, store: ImageStore) -> None:
        info = await store.put("s1/empty.bin", b"", content_type="application/octet-stream")
        assert info.size == 0
        assert await store.get("s1/empty.bin") == b""
        assert [chunk async for chunk in store.stream("s1/empty.bin")] == []

    async def test_missing_key_raises_object_not_found_from_every_read(
        self, store: ImageStore
    ) -> None:
        with pytest.raises(ObjectNotFound) as caught:
            await store.get("s1/missing.jpg")
        assert caught.value.key == "s1/missing.jpg"
        with pytest.raises(ObjectNotFound):
            await store.head("s1/missing.jpg")
        with pytest.raises(ObjectNotFound):
            async for _ in store.stream("s1/missing.jpg"):
                pass  # pragma: no cover - must raise before any chunk
        assert await store.exists("s1/missing.jpg") is False

    async def test_exists_follows_put_and_delete(self, store: ImageStore) -> None:
        assert not await store.exists("s1/e.jpg")
        await store.put("s1/e.jpg", b"e", content_type="image/jpeg")
        assert await store.exists("s1/e.jpg")
        await store.delete("s1/e.jpg")
        assert not await store.exists("s1/e.jpg")

    async def test_delete_is_idempotent(self, store: ImageStore) -> None:
        await store.put("s1/d.jpg", b"d", content_type="image/jpeg")
        await store.delete("s1/d.jpg")
        await store.delete("s1/d.jpg")
        await store.delete("never/existed.jpg")
        with pytest.raises(ObjectNotFound):
            await store.get("s1/d.jpg")

    async def test_delete_many_removes_all_and_ignores_missing(self, store: ImageStore) -> None:
        for name in ("a", "b", "c"):
            await store.put(f"s1/{name}.jpg", name.encode(), content_type="image/jpeg")
        await store.delete_many(["s1/a.jpg", "s1/b.jpg", "s1/missing.jpg", "s1/a.jpg"])
        assert [info.key async for info in store.list()] == ["s1/c.jpg"]
        await store.delete_many([])

    async def test_put_overwrites_bytes_type_and_metadata(self, store: ImageStore) -> None:
        await store.put("s1/o.jpg", b"old", content_type="image/jpeg", metadata={"v": "1"})
        info = await store.put("s1/o.jpg", b"newer", content_type="image/png", metadata={})
        assert info.size == 5
        assert await store.get("s1/o.jpg") == b"newer"
        head = await store.head("s1/o.jpg")
        assert (head.content_type, dict(head.metadata)) == ("image/png", {})

    async def test_list_yields_keys_in_order_with_and_without_prefix(
        self, store: ImageStore
    ) -> None:
        keys = ["s2/b.jpg", "s1/z.jpg", "s1/a.jpg", "s10/a.jpg", "s1-x/a.jpg", "s1/ä.jpg"]
        for key in keys:
            await store.put(key, key.encode(), content_type="image/jpeg")
        assert [info.key async for info in store.list()] == sorted(keys)
        assert [info.key async for info in store.list("s1/")] == [
            "s1/a.jpg",
            "s1/z.jpg",
            "s1/ä.jpg",
        ]
        assert [info.key async for info in store.list("s1")] == sorted(
            ["s1/a.jpg", "s1/z.jpg", "s1/ä.jpg", "s10/a.jpg", "s1-x/a.jpg"]
        )
        assert [info.key async for info in store.list("nothing-here")] == []
        sizes = {info.key: info.size async for info in store.list()}
        assert sizes == {key: len(key.encode()) for key in keys}

    async def test_list_of_an_empty_store_yields_nothing(self, store: ImageStore) -> None:
        assert [info async for info in store.list()] == []

    async def test_stream_yields_chunks_of_at_most_chunk_size(self, store: ImageStore) -> None:
        data = bytes(range(256)) * 100
        await store.put("s1/s.bin", data, content_type="application/octet-stream")
        chunks = [chunk async for chunk in store.stream("s1/s.bin", chunk_size=1000)]
        assert b"".join(chunks) == data
        assert all(0 < len(chunk) <= 1000 for chunk in chunks)
        assert len(chunks) >= len(data) // 1000

    async def test_put_accepts_binary_files_and_async_iterables(self, store: ImageStore) -> None:
        file = io.BytesIO(b"skip|file body")
        file.seek(5)
        info = await store.put("s1/f.jpg", file, content_type="image/jpeg")
        assert info.size == 9
        assert await store.get("s1/f.jpg") == b"file body"

        async def parts() -> AsyncIterator[bytes]:
            for part in (b"one ", b"", b"two ", b"three"):
                yield part

        info = await store.put("s1/i.jpg", parts(), content_type="image/jpeg")
        assert info.sha256 == hashlib.sha256(b"one two three").hexdigest()
        assert await store.get("s1/i.jpg") == b"one two three"

    async def test_large_streamed_object_is_never_held_whole_in_memory(
        self, store: ImageStore
    ) -> None:
        size = self.large_object_size
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            info = await store.put(
                "s1/large.bin", pattern_source(size), content_type="application/octet-stream"
            )
            put_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.reset_peak()
            digest = hashlib.sha256()
            received = 0
            async for chunk in store.stream("s1/large.bin", chunk_size=MiB):
                digest.update(chunk)
                received += len(chunk)
            stream_peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        expected = pattern_sha256(size)
        assert (info.size, received) == (size, size)
        assert digest.hexdigest() == expected
        assert info.sha256 == expected
        if not self.keeps_objects_in_memory:
            assert put_peak < self.stream_memory_limit, f"put peaked at {put_peak} bytes"
            assert stream_peak < self.stream_memory_limit, f"stream peaked at {stream_peak} bytes"

    async def test_concurrent_puts_of_different_keys_all_land(self, store: ImageStore) -> None:
        keys = [f"s1/c{index:02d}.jpg" for index in range(24)]
        await asyncio.gather(
            *(store.put(key, key.encode() * 50, content_type="image/jpeg") for key in keys)
        )
        assert [info.key async for info in store.list("s1/")] == keys
        for key in keys:
            assert await store.get(key) == key.encode() * 50

    async def test_concurrent_puts_of_one_key_leave_one_whole_version(
        self, store: ImageStore
    ) -> None:
        versions = [bytes([index]) * (1000 + index) for index in range(8)]
        await asyncio.gather(
            *(store.put("s1/race.jpg", data, content_type="image/jpeg") for data in versions)
        )
        stored = await store.get("s1/race.jpg")
        assert stored in versions
        info = await store.head("s1/race.jpg")
        assert info.size == len(stored)
        assert info.sha256 in (None, hashlib.sha256(stored).hexdigest())

    async def test_failing_source_leaves_the_previous_object(self, store: ImageStore) -> None:
        await store.put("s1/keep.jpg", b"previous", content_type="image/jpeg")
        with pytest.raises(RuntimeError, match="data source broke"):
            await store.put("s1/keep.jpg", _FailingSource(3), content_type="image/jpeg")
        with pytest.raises(RuntimeError, match="data source broke"):
            await store.put("s1/new.jpg", _FailingSource(2), content_type="image/jpeg")
        assert await store.get("s1/keep.jpg") == b"previous"
        assert [info.key async for info in store.list()] == ["s1/keep.jpg"]

    async def test_nfc_and_nfd_spellings_name_the_same_object(self, store: ImageStore) -> None:
        nfd = unicodedata.normalize("NFD", "s1/café.jpg")
        await store.put(nfd, b"accent", content_type="image/jpeg")
        assert await store.get(unicodedata.normalize("NFC", "s1/café.jpg")) == b"accent"
        assert [info.key async for info in store.list()] == [
            unicodedata.normalize("NFC", "s1/café.jpg")
        ]

    @pytest.mark.parametrize("key", INVALID_KEYS)
    async def test_invalid_keys_are_refused_by_every_method(
        self, store: ImageStore, key: str
    ) -> None:
        calls: list[Any] = [
            lambda: store.put(key, b"x", content_type="image/jpeg"),
            lambda: store.get(key),
            lambda: store.head(key),
            lambda: store.exists(key),
            lambda: store.delete(key),
            lambda: store.delete_many(["s1/ok.jpg", key]),
            lambda: store.presign(key, expires_in=60),
        ]
        for call in calls:
            with pytest.raises(ValidationError):
                await call()
        with pytest.raises(ValidationError):
            store.stream(key)
        assert [info async for info in store.list()] == []

    async def test_wrong_argument_types_raise_type_error(self, store: ImageStore) -> None:
        with pytest.raises(TypeError, match="key"):
            await store.get(42)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="bytes"):
            await store.put("s1/t.jpg", "text", content_type="image/jpeg")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="binary mode"):
            await store.put("s1/t.jpg", io.StringIO("text"), content_type="image/jpeg")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await store.put("s1/t.jpg", 12, content_type="image/jpeg")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="content_type"):
            await store.put("s1/t.jpg", b"x", content_type=None)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="keys"):
            await store.delete_many("s1/t.jpg")
        with pytest.raises(TypeError, match="expires_in"):
            await store.presign("s1/t.jpg", expires_in=1.5)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="chunk_size"):
            store.stream("s1/t.jpg", chunk_size="big")  # type: ignore[arg-type]
        assert not await store.exists("s1/t.jpg")

    @pytest.mark.parametrize(
        ("content_type", "metadata"),
        [
            ("jpeg", None),
            ("image/jpeg\r\nX-Injected: 1", None),
            ("image/jpeg", {"Upper": "x"}),
            ("image/jpeg", {"demeter-sha256": "x"}),
            ("image/jpeg", {"ok": "caf\u00e9"}),
            ("image/jpeg", {"ok": "line\nbreak"}),
            ("image/jpeg", {"ok": ""}),
            ("image/jpeg", {"ok": " padded"}),
            ("image/jpeg", {"big": "x" * 1600}),
        ],
    )
    async def test_bad_content_type_or_metadata_is_refused_before_io(
        self, store: ImageStore, content_type: str, metadata: dict[str, str] | None
    ) -> None:
        with pytest.raises(ValidationError):
            await store.put("s1/v.jpg", b"x", content_type=content_type, metadata=metadata)
        assert not await store.exists("s1/v.jpg")
