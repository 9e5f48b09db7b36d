"""Hostile image data and content types: stored exactly, or refused with nothing left.

Data comes truncated, polyglot, all zeros, empty, mislabelled, as real
pictures with bytes flipped, and through every way ``upload_original`` takes
it (bytes, files, one-shot streams with empty or non-bytes chunks); content
types and declared sizes are fuzzed with it. Finally a 500 MiB + 1 byte
stream, generated lazily, is refused without being held in memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from PIL import Image

from demeter_storage.adapters.local.store import LocalImageStore
from demeter_storage.adapters.memory.metadata import InMemoryMetadataRepository
from demeter_storage.adapters.pillow.thumbnails import PillowThumbnailMaker
from demeter_storage.domain.errors import ValidationError
from demeter_storage.service.image_service import MAX_UPLOAD_BYTES, ImageService
from demeter_storage.service.schemas import UploadRequest
from tests.proof.strategies import (
    ACCEPTED,
    ALIASES,
    MIME,
    chunked,
    content_types,
    fuzz_settings,
    image_bytes,
    leftovers,
    memory_service,
    outcome,
    sniffed_type,
)


def expected_type(declared: object, data: bytes) -> str | tuple[type[Exception], ...]:
    """The content type the upload must be stored with, or the errors it may raise."""
    if declared is not None and not isinstance(declared, str):
        return (TypeError,)
    sniffed = sniffed_type(data)
    if declared is None:
        return sniffed or (ValidationError,)
    text = declared.strip()
    base = text.split(";", 1)[0].strip().lower()
    canonical = ALIASES.get(base, base)
    if len(text) > 255 or not MIME.fullmatch(text) or canonical not in ACCEPTED:
        return (ValidationError,)
    heif = {"image/heic", "image/heif"}
    if sniffed is None or (sniffed != canonical and not {sniffed, canonical} <= heif):
        return (ValidationError,)
    return canonical


class Unseekable:
    """A blocking binary file that cannot seek (a pipe, a socket)."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def seekable(self) -> bool:
        return False

    def read(self, size: int = -1) -> bytes:
        return self._data.read(size)


async def _with_bad_chunk(data: bytes, at: int, bad: object) -> AsyncIterator[Any]:
    yield data[:at]
    yield bad
    yield data[at:]


@st.composite
def deliveries(draw: st.DrawFn, data: bytes) -> tuple[str, Any, tuple[type[Exception], ...]]:
    """How the data is passed, and the errors that way may add."""
    how = draw(
        st.sampled_from(
            ["bytes", "bytearray", "memoryview", "file", "unseekable", "stream", "stream", "bad"]
        )
    )
    if how == "bytes":
        return how, data, ()
    if how == "bytearray":
        return how, bytearray(data), ()
    if how == "memoryview":
        return how, memoryview(data), ()
    if how == "file":
        return how, io.BytesIO(data), ()
    if how == "unseekable":
        return how, Unseekable(data), ()
    if how == "stream":
        sizes = draw(st.lists(st.integers(0, 40), max_size=12))
        return how, chunked(data, sizes), ()
    bad = draw(st.sampled_from(["text", 7, None]))
    return how, _with_bad_chunk(data, draw(st.integers(0, len(data))), bad), (TypeError,)


def _size_problems(declared: object, actual: int) -> tuple[type[Exception], ...]:
    if declared is None:
        return ()
    if isinstance(declared, bool) or not isinstance(declared, int):
        return (TypeError,)
    if declared == 0 or declared > MAX_UPLOAD_BYTES or declared != actual:
        return (ValidationError,)
    return ()


def _pictures() -> list[bytes]:
    found = []
    for form in ("JPEG", "PNG", "WEBP", "TIFF"):
        output = io.BytesIO()
        Image.new("RGB", (24, 16), (30, 140, 60)).save(output, form)
        found.append(output.getvalue())
    return found


PICTURES = _pictures()


@st.composite
def damaged_pictures(draw: st.DrawFn) -> bytes:
    """Real pictures, truncated or with bytes overwritten (the thumbnail maker decodes these)."""
    data = bytearray(draw(st.sampled_from(PICTURES)))
    for _ in range(draw(st.integers(0, 6))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(1, len(data)))])


async def _upload_data(
    service: ImageService,
    data: bytes,
    declared_type: object,
    declared_size: object,
    delivery: tuple[str, Any, tuple[type[Exception], ...]],
) -> None:
    how, source, delivery_errors = delivery
    stored_type = expected_type(declared_type, data)
    errors = (
        *(stored_type if isinstance(stored_type, tuple) else ()),
        *_size_problems(declared_size, len(data)),
        *delivery_errors,
    )
    request = UploadRequest("photo.jpg", declared_type, size=declared_size)  # type: ignore[arg-type]
    image = await outcome(service.upload_original(source, "fuzz", request))
    if isinstance(image, Exception):
        event(f"refused: {type(image).__name__}")
        assert errors, f"{how} {declared_type!r} {declared_size!r} refused: {image!r}"
        assert isinstance(image, errors), f"{image!r} is none of {errors}"
        assert await leftovers(service) == []
        return
    event(f"stored: {how}")
    assert not errors, f"{how} {declared_type!r} {declared_size!r} accepted {data[:40]!r}"
    assert (image.content_type, image.size) == (stored_type, len(data))
    assert image.sha256 == hashlib.sha256(data).hexdigest()
    assert await service.download_original(image.s3_key) == data
    assert (await service.originals.head(image.s3_key)).content_type == stored_type
    assert await service.delete_image(image.image_id)
    assert await leftovers(service) == []


def _declared_types(data: bytes) -> st.SearchStrategy[object]:
    """Fuzzed content types, and (half the time) spellings of the data's own type."""
    sniffed = sniffed_type(data)
    if sniffed is None:
        return content_types
    spellings = [sniffed, *(alias for alias, canonical in ALIASES.items() if canonical == sniffed)]
    own = st.builds(
        lambda base, upper, params: (base.upper() if upper else base) + params,
        st.sampled_from(spellings),
        st.booleans(),
        st.sampled_from(["", "; charset=binary", " ;a=b", "  "]),
    )
    return st.one_of(own, own, content_types)


@fuzz_settings()
@given(data=st.one_of(image_bytes(), damaged_pictures(), damaged_pictures()), pick=st.data())
def test_data_and_content_types_are_stored_exactly_or_refused(
    loop: asyncio.Runner, data: bytes, pick: st.DataObject
) -> None:
    declared_type = pick.draw(_declared_types(data), label="declared_type")
    declared_size = pick.draw(
        st.one_of(
            st.none(),
            st.just(len(data)),
            st.none(),
            st.just(len(data)),
            st.sampled_from([len(data) + 1, len(data) - 1, 0, -1, MAX_UPLOAD_BYTES + 1]),
            st.sampled_from([True, 1.0, "5"]),
        ),
        label="declared_size",
    )
    delivery = pick.draw(deliveries(data), label="delivery")
    service, _ = memory_service()
    loop.run(_upload_data(service, data, declared_type, declared_size, delivery))


# Pillow warns about damaged files (UserWarning); the suite makes warnings errors,
# production does not, and the thumbnail maker only has to turn errors into None.
@pytest.mark.filterwarnings("ignore::UserWarning:PIL")
@fuzz_settings(weight=0.25)
@given(data=st.one_of(damaged_pictures(), image_bytes()), pick=st.data())
def test_damaged_pictures_get_no_thumbnail_but_no_error_either(
    loop: asyncio.Runner, data: bytes, pick: st.DataObject
) -> None:
    service, _ = memory_service()
    service.thumbnails = PillowThumbnailMaker()
    loop.run(_upload_data(service, data, None, None, pick.draw(deliveries(data))))


# 500 MiB + 1 byte, from a stream generated as it is read.

CHUNK = 1024 * 1024


def _rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


class HugeStream:
    """``size`` bytes of a JPEG, made chunk by chunk; records how far it got and the RSS."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.sent = 0
        self.rss_start = self.rss_peak = _rss_kib()
        self._template = PICTURES[0][:32] + os.urandom(CHUNK - 32)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.sent < self.size:
            piece = min(CHUNK, self.size - self.sent)
            # A new object each time: a store that kept the chunks would grow by 500 MiB.
            chunk = bytes(self._template[:piece])
            self.sent += piece
            if self.sent % (32 * CHUNK) < CHUNK:
                self.rss_peak = max(self.rss_peak, _rss_kib())
            yield chunk


@pytest.mark.slow
@pytest.mark.parametrize("thumbnails", [False, True], ids=["plain", "thumbnails"])
def test_a_stream_of_500_mib_and_1_byte_is_refused_and_leaves_nothing(
    loop: asyncio.Runner, tmp_path: Path, thumbnails: bool
) -> None:
    root = tmp_path / "root"
    service = ImageService(
        originals=LocalImageStore(root / "orig", name="orig", durable=False),
        visualizations=LocalImageStore(root / "viz", name="viz", durable=False),
        metadata=InMemoryMetadataRepository(),
        thumbnails=PillowThumbnailMaker() if thumbnails else None,
    )
    stream = HugeStream(MAX_UPLOAD_BYTES + 1)
    with pytest.raises(ValidationError, match="larger than the limit"):
        loop.run(service.upload_original(stream, "big", UploadRequest("big.jpg", "image/jpeg")))
    assert stream.sent > MAX_UPLOAD_BYTES  # it was streamed to the end, not refused up front
    assert (stream.rss_peak - stream.rss_start) * 1024 < 128 * 1024 * 1024
    assert loop.run(leftovers(service)) == []
    assert [p for p in root.rglob("*") if p.is_file() and ".demeter" not in p.parts] == []

    # Declared up front, the same size is refused before a byte is read.
    early = HugeStream(MAX_UPLOAD_BYTES + 1)
    request = UploadRequest("big.jpg", "image/jpeg", size=MAX_UPLOAD_BYTES + 1)
    with pytest.raises(ValidationError, match="larger than the limit"):
        loop.run(service.upload_original(early, "big", request))
    assert early.sent == 0
    assert loop.run(leftovers(service)) == []
