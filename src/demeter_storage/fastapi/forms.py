"""A ``multipart/form-data`` upload read as it arrives: the fields first, then the file, streamed.

Starlette's ``request.form()`` reads the whole body (spooling the file to
disk) before the endpoint runs. Here the fields before the file part are
read (each small, few of them), and the file part is handed on as an async
iterator of its bytes, so the service checks its first bytes and streams the
rest to the store while the client is still sending it. The file must be the
last part, as in S3's POST uploads: a part after it, or a body that ends
before its closing boundary, fails the stream (the service then removes what
it stored).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Final

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from demeter_storage.domain.errors import ValidationError
from demeter_storage.ports.streams import DEFAULT_CHUNK_SIZE

__all__ = [
    "FILE_FIELD",
    "MAX_FIELDS",
    "MAX_FIELD_BYTES",
    "FormRefused",
    "StreamedForm",
    "open_form",
]

FILE_FIELD: Final = "file"
MAX_FIELDS: Final = 16
"""Fields before the file part; more is refused (a form this small needs a few)."""
MAX_FIELD_BYTES: Final = 16 * 1024
"""Bytes of one field's value (metadata included)."""
MAX_PART_HEADER_BYTES: Final = 8 * 1024
FILE_CHUNK_BYTES: Final = DEFAULT_CHUNK_SIZE
"""The file reaches the store in pieces of about this size (1 MiB), not the server's reads."""


class FormRefused(ValidationError):
    """The body is not a form this route accepts; nothing of it was stored."""


class _Events:
    """Collects what the push parser reports, to be handled after each ``write``."""

    def __init__(self) -> None:
        self.items: list[tuple[str, object]] = []
        self._headers: dict[str, str] = {}
        self._field = bytearray()
        self._value = bytearray()
        self._header_bytes = 0

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": lambda: self.items.append(("end", None)),
            "on_end": lambda: self.items.append(("done", None)),
        }

    def _part_begin(self) -> None:
        self._headers = {}
        self._header_bytes = 0

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_PART_HEADER_BYTES:
            raise FormRefused(f"a part's headers exceed {MAX_PART_HEADER_BYTES} bytes")

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._count(end - start)
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._count(end - start)
        self._value += data[start:end]

    def _header_end(self) -> None:
        name = self._field.decode("latin-1").strip().lower()
        self._headers[name] = self._value.decode("latin-1").strip()
        self._field.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        self.items.append(("headers", dict(self._headers)))

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if end > start:
            self.items.append(("data", data[start:end]))


class StreamedForm:
    """The fields sent before the file part, and the file part's bytes as they arrive.

    Attributes:
        fields: each field's value (decoded as UTF-8).
        filename: the file part's ``filename``, if it sent one.
        content_type: the file part's ``Content-Type``, if it sent one.
    """

    def __init__(
        self,
        fields: dict[str, str],
        filename: str | None,
        content_type: str | None,
        rest: AsyncIterator[tuple[str, object]],
    ) -> None:
        self.fields = fields
        self.filename = filename
        self.content_type = content_type
        self._rest = rest

    async def file(self) -> AsyncIterator[bytes]:
        """The file's bytes; fails if anything but the closing boundary follows them.

        Raises:
            FormRefused: a part after the file, or a body cut short.
        """
        finished = False
        pending: list[bytes] = []
        size = 0
        async for kind, value in self._rest:
            if kind == "data" and not finished:
                assert isinstance(value, bytes)
                pending.append(value)
                size += len(value)
                if size >= FILE_CHUNK_BYTES:  # the server reads ~64 KiB at a time: gather
                    yield b"".join(pending)
                    pending, size = [], 0
            elif kind == "end":
                finished = True
            elif kind == "done":
                if pending:
                    yield b"".join(pending)
                return
            else:
                raise FormRefused(f"send the {FILE_FIELD!r} part last; a part followed it")
        raise FormRefused("the form ended before its closing boundary; send the whole form")


def _boundary(content_type: str | None) -> bytes:
    media, options = parse_options_header(content_type or "")
    if media != b"multipart/form-data":
        raise FormRefused(
            f"send the upload as multipart/form-data, not {content_type or 'no content type'!r}"
        )
    boundary = options.get(b"boundary", b"")
    if not 1 <= len(boundary) <= 70:
        raise FormRefused("the multipart/form-data content type has no valid boundary")
    return boundary


async def _events(request: Request, boundary: bytes) -> AsyncIterator[tuple[str, object]]:
    events = _Events()
    parser = MultipartParser(boundary, events.callbacks())  # type: ignore[arg-type]
    try:
        async for chunk in request.stream():
            try:
                parser.write(chunk)
            except MultipartParseError as exc:
                raise FormRefused(f"the form is malformed: {exc}") from None
            items, events.items = events.items, []
            for item in items:
                yield item
            if items and items[-1][0] == "done":
                return
    except ClientDisconnect:
        raise FormRefused("the client went away before the form was complete") from None


def _disposition(headers: dict[str, str]) -> tuple[str, str | None]:
    value = headers.get("content-disposition")
    media, options = parse_options_header(value)
    name = options.get(b"name")
    if media != b"form-data" or name is None:
        raise FormRefused("each part needs Content-Disposition: form-data with a name")
    filename = options.get(b"filename")
    return _text(name, "a part's name"), None if filename is None else _text(filename, "filename")


def _text(value: bytes, what: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise FormRefused(f"{what} is not UTF-8") from None


async def open_form(request: Request) -> StreamedForm:
    """Read the form up to its file part (named ``file``) and return it, the file unread.

    Raises:
        FormRefused: not a multipart form, too many or too large fields, a
            field sent twice, no file part, or a malformed body.
    """
    rest = _events(request, _boundary(request.headers.get("content-type")))
    fields: dict[str, str] = {}
    name: str | None = None
    value = bytearray()
    async for kind, item in rest:
        if kind == "headers":
            assert isinstance(item, dict)
            name, filename = _disposition(item)
            if name == FILE_FIELD:
                return StreamedForm(fields, filename, item.get("content-type"), rest)
            if name in fields or len(fields) >= MAX_FIELDS:
                raise FormRefused(f"field {name!r} is sent twice, or more than {MAX_FIELDS} fields")
            value.clear()
        elif kind == "data":
            assert isinstance(item, bytes)
            value += item
            if len(value) > MAX_FIELD_BYTES:
                raise FormRefused(f"field {name!r} is longer than {MAX_FIELD_BYTES} bytes")
        elif kind == "end" and name is not None:
            fields[name] = _text(bytes(value), f"field {name!r}")
            name = None
        elif kind == "done":
            break
    raise FormRefused(f"the form has no part named {FILE_FIELD!r}; send the image in it")
