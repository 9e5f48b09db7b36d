"""Reading an upload form (``multipart/form-data``) as it streams in.

S3's POST uploads send the policy fields first and the file last; the fields
are small and read into memory (bounded), the file is handed on as a stream
of chunks, so a 500 MB upload never sits in memory. Only what an upload form
needs is supported: named fields, then one file part; anything after the
file is ignored, as S3 does.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Final

import attrs

from demeter_storage.domain.errors import ValidationError

MAX_FIELD_BYTES: Final = 64 * 1024
MAX_FIELDS: Final = 32
MAX_HEADER_BYTES: Final = 8 * 1024
FILE_FIELD: Final = "file"
_BOUNDARY: Final = re.compile(r'boundary=(?:"([^"]{1,70})"|([^\s;"]{1,70}))', re.IGNORECASE)
_DISPOSITION_NAME: Final = re.compile(r'\bname="([^"]*)"', re.IGNORECASE)
_DISPOSITION_FILENAME: Final = re.compile(r'\bfilename="([^"]*)"', re.IGNORECASE)


class FormError(ValidationError):
    """The request body is not a well-formed upload form."""


@attrs.frozen
class UploadForm:
    """The fields sent before the file, and the file's bytes as they arrive."""

    fields: dict[str, str]
    file: AsyncIterator[bytes]
    filename: str | None


def boundary_of(content_type: str) -> bytes:
    """The multipart boundary of a ``multipart/form-data`` content type.

    Raises:
        FormError: another content type, or no boundary.
    """
    if not content_type.lower().startswith("multipart/form-data"):
        raise FormError("an upload form must be sent as multipart/form-data")
    found = _BOUNDARY.search(content_type)
    if found is None:
        raise FormError("the multipart/form-data content type has no boundary")
    return (found.group(1) or found.group(2)).encode("latin-1")


class _Reader:
    """A byte buffer over an async iterator of chunks."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = bytearray()
        self._ended = False

    async def _fill(self) -> bool:
        if self._ended:
            return False
        try:
            chunk = await anext(self._chunks)
        except StopAsyncIteration:
            self._ended = True
            return False
        self._buffer += chunk
        return True

    async def read_until(self, marker: bytes, limit: int, what: str) -> bytes:
        """The bytes before ``marker`` (consumed too), at most ``limit`` of them."""
        start = 0
        while True:
            found = self._buffer.find(marker, start)
            if found > limit:
                raise FormError(f"the form's {what} is longer than {limit} bytes")
            if found >= 0:
                data = bytes(self._buffer[:found])
                del self._buffer[: found + len(marker)]
                return data
            if len(self._buffer) > limit:
                raise FormError(f"the form's {what} is longer than {limit} bytes")
            start = max(len(self._buffer) - len(marker) + 1, 0)
            if not await self._fill():
                raise FormError(f"the form ended inside its {what}")

    async def stream_until(self, marker: bytes) -> AsyncIterator[bytes]:
        """The bytes before ``marker``, as they arrive; ``marker`` is consumed."""
        keep = len(marker) - 1
        while True:
            found = self._buffer.find(marker)
            if found >= 0:
                if found:
                    yield bytes(self._buffer[:found])
                del self._buffer[: found + len(marker)]
                return
            if len(self._buffer) > keep:
                # Everything but a tail that may be the start of the marker.
                cut = len(self._buffer) - keep
                yield bytes(self._buffer[:cut])
                del self._buffer[:cut]
            if not await self._fill():
                raise FormError("the form ended inside the file (the upload was cut short)")


async def read_upload_form(chunks: AsyncIterator[bytes], content_type: str) -> UploadForm:
    """Read the fields of an upload form up to its file part.

    Raises:
        FormError: not multipart/form-data, malformed, too many or too large
            fields, or no file part.
    """
    delimiter = b"--" + boundary_of(content_type)
    reader = _Reader(chunks)
    await reader.read_until(delimiter, MAX_FIELD_BYTES, "preamble")
    fields: dict[str, str] = {}
    while True:
        after = await reader.read_until(b"\r\n", MAX_HEADER_BYTES, "part boundary")
        if after.startswith(b"--"):
            raise FormError(f"the form has no {FILE_FIELD!r} part")
        headers = await reader.read_until(b"\r\n\r\n", MAX_HEADER_BYTES, "part headers")
        name, filename = _disposition(headers)
        if filename is not None or name == FILE_FIELD:
            file = reader.stream_until(b"\r\n" + delimiter)
            return UploadForm(fields=fields, file=file, filename=filename)
        if len(fields) >= MAX_FIELDS:
            raise FormError(f"the form has more than {MAX_FIELDS} fields")
        value = await reader.read_until(b"\r\n" + delimiter, MAX_FIELD_BYTES, f"field {name!r}")
        try:
            fields[name] = value.decode("utf-8")
        except UnicodeDecodeError:
            raise FormError(f"the form field {name!r} is not UTF-8 text") from None


def _disposition(headers: bytes) -> tuple[str, str | None]:
    for line in headers.decode("utf-8", errors="replace").split("\r\n"):
        header, _, value = line.partition(":")
        if header.strip().lower() == "content-disposition":
            name = _DISPOSITION_NAME.search(value)
            if name is None:
                break
            filename = _DISPOSITION_FILENAME.search(value)
            return name.group(1), filename.group(1) if filename else None
    raise FormError("a form part has no Content-Disposition with a name")
