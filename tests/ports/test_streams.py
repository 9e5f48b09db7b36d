"""Payload: the three kinds of put data, read in chunks."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from demeter_storage.ports.streams import Digest, Payload, PayloadConsumed


async def _read(payload: Payload, chunk_size: int = 4) -> list[bytes]:
    return [chunk async for chunk in payload.chunks(chunk_size)]


async def test_bytes_are_replayable_and_chunked() -> None:
    payload = Payload.of(bytearray(b"0123456789"))
    assert payload.size_hint == 10
    assert payload.in_memory == b"0123456789"
    assert await _read(payload) == [b"0123", b"4567", b"89"]
    assert await _read(payload) == [b"0123", b"4567", b"89"]
    assert Payload.of(payload) is payload


async def test_seekable_files_rewind_to_where_they_started(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"headerBODY")
    with path.open("rb") as file:
        file.seek(6)
        payload = Payload.of(file)
        assert payload.size_hint == 4
        assert payload.replayable
        assert await payload.read_all() == b"BODY"
        assert await payload.read_all() == b"BODY"


class _Unseekable(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._data.read(size)


async def test_unseekable_files_and_iterables_are_one_shot() -> None:
    payload = Payload.of(_Unseekable(b"abcdef"))
    assert payload.size_hint is None
    assert await _read(payload) == [b"abcd", b"ef"]
    assert not payload.replayable
    with pytest.raises(PayloadConsumed):
        await _read(payload)

    async def parts() -> AsyncIterator[bytes]:
        yield b"123456789"
        yield memoryview(b"ab")  # type: ignore[misc]

    iterable = Payload.of(parts())
    assert iterable.replayable
    assert await _read(iterable) == [b"1234", b"5678", b"9", b"ab"]
    assert not iterable.replayable


@pytest.mark.parametrize(
    ("value", "message"),
    [("text", "encode"), (io.StringIO("x"), "binary mode"), (42, "got int"), (None, "NoneType")],
)
def test_wrong_types_are_refused(value: object, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        Payload.of(value)


async def test_a_text_file_or_a_str_chunk_is_a_type_error() -> None:
    class TextLike:
        def read(self, size: int) -> str:
            return "text"

    with pytest.raises(TypeError, match="binary mode"):
        await _read(Payload.of(TextLike()))

    class NonBlocking:
        def read(self, size: int) -> None:
            return None

    with pytest.raises(TypeError, match="returned NoneType"):
        await _read(Payload.of(NonBlocking()))

    async def strings() -> AsyncIterator[str]:
        yield "text"

    with pytest.raises(TypeError, match="yielded str"):
        await _read(Payload.of(strings()))


def test_digest_counts_and_hashes() -> None:
    digest = Digest()
    assert digest.update(b"ab") == b"ab"
    digest.update(b"c")
    assert digest.size == 3
    assert digest.sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
