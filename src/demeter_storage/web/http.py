"""The HTTP pieces of the signed-URL app: one exchange, its headers, ranges and error answers.

Kept apart from :mod:`demeter_storage.web.app` (which decides what a request may
do) because these rules hold for any request: a header is text whatever its
bytes, a number in a header may have any length, a body that is refused is
never read (the connection is closed instead), and an error maps to the one
status that tells the client whose mistake it was.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Final
from urllib.parse import quote, unquote

from demeter_storage.domain.errors import (
    IntegrityError,
    InvalidSignature,
    ObjectChanged,
    ObjectExists,
    ObjectNotFound,
    StorageError,
    StorageUnavailable,
    ValidationError,
)
from demeter_storage.domain.objects import ObjectInfo

logger = logging.getLogger("demeter_storage.web.app")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

DRAIN_LIMIT: Final = 64 * 1024
"""The most of a body's unread rest read to keep a connection open after a success."""

_RANGE: Final = re.compile(r"bytes=([0-9]*)-([0-9]*)", re.IGNORECASE | re.ASCII)
_MAX_DIGITS: Final = 18
_BEYOND: Final = 10**_MAX_DIGITS
"""Stands for any number of more digits: larger than every object (and every offset)."""
_UNSAFE_FILENAME: Final = re.compile(r"[^A-Za-z0-9._ ()+,=@-]")
_OWS: Final = " \t"
_CORS: Final = [(b"access-control-allow-origin", b"*"), (b"access-control-expose-headers", b"etag")]


class Refused(ValidationError):
    """A request refused with a 4xx status of its own (the client's mistake).

    Attributes:
        status: the HTTP status to answer with.
    """

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


class RequestHeaders:
    """A request's headers: names lower-cased, values as text (each byte one latin-1 character).

    HTTP allows any byte from 0x80 up in a value; decoding them as latin-1
    never fails, and such a value simply matches nothing it is compared with.
    """

    def __init__(self, raw: Iterable[tuple[bytes, bytes]]) -> None:
        self._values: dict[str, list[str]] = {}
        for name, value in raw:
            key = name.decode("latin-1").lower()
            self._values.setdefault(key, []).append(value.decode("latin-1").strip(_OWS))

    def one(self, name: str) -> str | None:
        """The header's value, None when absent.

        Raises:
            Refused: (400) it was sent more than once.
        """
        values = self._values.get(name, [])
        if len(values) > 1:
            raise Refused(400, f"the {name} header was sent {len(values)} times; send it once")
        return values[0] if values else None

    def single(self, name: str) -> str | None:
        """The header's value; None when absent or sent more than once (then it is ignored)."""
        values = self._values.get(name, [])
        return values[0] if len(values) == 1 else None

    def joined(self, name: str) -> str | None:
        """A list header's values joined with commas (RFC 9110 5.3), None when absent."""
        values = self._values.get(name)
        return ", ".join(values) if values is not None else None


class Exchange:
    """One request and its answer.

    It reads the body only when asked, and remembers whether it read it to the
    end: an answer sent before that closes an HTTP/1 connection
    (``Connection: close``), so the server drops the rest of a refused body
    instead of reading it all to reuse the connection.
    """

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self.headers = RequestHeaders(scope.get("headers", []))
        self._receive = receive
        self._send = send
        self._body_done = False
        self.started = False
        self.finished = False

    @property
    def body_pending(self) -> bool:
        """Whether an HTTP/1 request still has body bytes this app did not read."""
        if self._body_done or self.scope.get("http_version", "1.1") not in ("1.0", "1.1"):
            return False
        length = self.headers.joined("content-length")
        chunked = self.headers.joined("transfer-encoding") is not None
        return chunked or (length is not None and length != "0")

    async def body(self) -> AsyncIterator[bytes]:
        """The request body's chunks as they arrive.

        Raises:
            ValidationError: the client disconnected before the body ended.
        """
        while not self._body_done:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self._body_done = True
                raise ValidationError("the client disconnected before the upload ended")
            self._body_done = not message.get("more_body", False)
            chunk = message.get("body", b"")
            if chunk:
                yield chunk

    async def drain(self, limit: int = DRAIN_LIMIT) -> None:
        """Read and drop what is left of the body, up to ``limit`` bytes (the rest is not read)."""
        seen = 0
        async for chunk in self.body():
            seen += len(chunk)
            if seen > limit:
                return

    async def start(self, status: int, headers: Headers) -> None:
        """Send the status and headers: CORS, and ``Connection: close`` if the body is unread."""
        extra = [(b"connection", b"close")] if self.body_pending else []
        self.started = True
        await self._send(
            {"type": "http.response.start", "status": status, "headers": [*headers, *_CORS, *extra]}
        )

    async def send_body(self, chunk: bytes, *, more: bool) -> None:
        """Send a piece of the answer's body; ``more=False`` ends the answer."""
        self.finished = not more
        await self._send({"type": "http.response.body", "body": chunk, "more_body": more})

    async def respond(self, status: int, text: str, extra: Headers | None = None) -> None:
        """A whole answer with a short plain-text body."""
        body = text.encode()
        await self.start(
            status,
            [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *(extra or []),
            ],
        )
        await self.send_body(body, more=False)


def answer_for(exc: Exception) -> tuple[int, str, Headers]:
    """The status, text and extra headers that answer a request failed by ``exc``.

    A client's mistake is a 4xx with the error's own message (it says what to
    change); the server's failures are a 5xx in a few words, their details
    (paths, endpoints) left to the log.
    """
    if isinstance(exc, Refused):
        return exc.status, f"{exc}\n", []
    if isinstance(exc, InvalidSignature):
        return 403, f"{exc}\n", []
    if isinstance(exc, ObjectExists | ObjectChanged):
        return 412, f"{exc}\n", []
    if isinstance(exc, ObjectNotFound):
        return 404, f"{exc}\n", []
    if isinstance(exc, ValidationError):
        return 400, f"{exc}\n", []
    if isinstance(exc, StorageUnavailable):
        extra = []
        if exc.retry_after is not None and math.isfinite(exc.retry_after):
            seconds = max(1, math.ceil(exc.retry_after))
            extra.append((b"retry-after", str(seconds).encode()))
        return 503, "storage unavailable; retry later\n", extra
    if isinstance(exc, IntegrityError):
        return 500, "the stored object is damaged\n", []
    if isinstance(exc, StorageError):
        return 500, "storage error\n", []
    return 500, "internal error\n", []


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """``(start, end)`` (end exclusive) of a single-range header; None: the whole object.

    Returns ``"unsatisfiable"`` for a range outside the object. Several ranges
    and malformed headers are ignored (the whole object is sent, as RFC 9110
    allows). Numbers may have any number of digits: past 18 they are larger
    than any object, and are never converted (Python refuses to convert more
    than 4,300 digits, and converting many costs time).
    """
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip(_OWS))
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":
        length = _number(last)
        if length == 0 or size == 0:
            return "unsatisfiable"
        return max(size - length, 0), size
    start = _number(first)
    if start >= size or (last != "" and _number(last) < start):
        return "unsatisfiable"
    end = size if last == "" else min(_number(last) + 1, size)
    return start, end


def _number(digits: str) -> int:
    significant = digits.lstrip("0")
    return int(significant or "0") if len(significant) <= _MAX_DIGITS else _BEYOND


def content_disposition(filename: str) -> str:
    """An ``inline`` disposition that names the file safely in any browser."""
    fallback = _UNSAFE_FILENAME.sub("_", filename) or "download"
    return f"inline; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def etag_of(info: ObjectInfo) -> str:
    """The object's ETag, quoted as HTTP sends it."""
    etag = info.etag or f'"{info.sha256 or ""}-{info.size}"'
    return etag if etag.startswith('"') else f'"{etag}"'


def matches(header: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` value names ``etag`` (weakly) or is ``*``."""
    if not header:
        return False
    tags = [tag.strip(_OWS).removeprefix("W/") for tag in header.split(",")]
    return "*" in tags or etag in tags


def split_path(scope: Scope) -> tuple[str, str]:
    """The bucket (decoded) and the key (still percent-encoded) of a request's path."""
    raw = scope.get("raw_path") or scope["path"].encode()
    path = raw.decode("latin-1").split("?", 1)[0]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    bucket, _, quoted_key = path.lstrip("/").partition("/")
    return unquote(bucket), quoted_key
