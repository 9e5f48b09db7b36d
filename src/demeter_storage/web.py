"""Serve the local store's signed URLs over HTTP: a small ASGI app.

S3 serves its presigned URLs itself; the local (and in-memory) stores hand
out URLs of the same shape that this app answers, so front-end code works
unchanged against disk and S3::

    from demeter_storage.web import SignedUrlApp
    app = SignedUrlApp.for_service(service)  # mount it in FastAPI/Starlette, or:
    # demeter-storage serve --port 8765

Requests are ``/{bucket}/{key}?X-Demeter-...``. A GET or HEAD needs a GET
signature, a PUT a PUT signature, each for that very key and still valid;
anything else is answered 403 before the store is touched. A POST to
``/{bucket}`` is an upload form from :meth:`ImageStore.presign_post`: its
signed policy fixes the key, the content type and the size range, and an
upload outside them is refused (403 or 400) and leaves nothing stored. GETs support one
byte range, ``ETag`` and ``If-None-Match``, and send the stored content type
with a ``Content-Disposition`` whose filename cannot break the header.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Final, Protocol
from urllib.parse import quote, unquote

from demeter_storage.adapters.url_signing import UrlSigner
from demeter_storage.domain.errors import (
    InvalidSignature,
    ObjectNotFound,
    StorageError,
    ValidationError,
)
from demeter_storage.domain.objects import DEFAULT_CONTENT_TYPE, ObjectInfo
from demeter_storage.ports import ImageStore
from demeter_storage.web_forms import read_upload_form

if TYPE_CHECKING:
    from demeter_storage.service import ImageService

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CHUNK_SIZE: Final = 256 * 1024
_RANGE: Final = re.compile(r"^bytes=(\d*)-(\d*)$")
_UNSAFE_FILENAME: Final = re.compile(r"[^A-Za-z0-9._ ()+,=@-]")


class SigningStore(Protocol):
    """A store whose URLs this app can verify (the local and in-memory stores)."""

    name: str

    async def url_signer(self) -> UrlSigner:
        """The signer behind the store's ``presign``."""
        ...


class SignedUrlApp:
    """An ASGI app serving signed URLs of one or more stores, by bucket name.

    Args:
        stores: the stores to serve; each needs ``url_signer()`` (the local and
            in-memory stores have it; S3 serves its own URLs).
    """

    def __init__(self, stores: Mapping[str, ImageStore]) -> None:
        for name, store in stores.items():
            if not callable(getattr(store, "url_signer", None)):
                raise TypeError(
                    f"store {name!r} ({type(store).__name__}) has no url_signer(): only the "
                    "local and in-memory stores' URLs are served here (S3 serves its own)"
                )
        self.stores = dict(stores)

    @classmethod
    def for_service(cls, service: ImageService) -> SignedUrlApp:
        """The app for both buckets of ``service`` (which must not be on S3)."""
        return cls({store.name: store for store in (service.originals, service.visualizations)})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one ASGI connection."""
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            await self._handle(scope, receive, send)
        except StorageError as exc:
            logger.warning("signed URL request failed: %s", exc)
            await _respond(send, 503, f"storage unavailable: {exc}\n")

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method == "OPTIONS":
            await _respond(send, 204, "", extra=_CORS_PREFLIGHT)
            return
        if method not in ("GET", "HEAD", "PUT", "POST"):
            await _respond(
                send, 405, "method not allowed\n", extra=[(b"allow", b"GET, HEAD, PUT, POST")]
            )
            return
        bucket, quoted_key = _split_path(scope)
        store = self.stores.get(bucket)
        if store is None:
            await _respond(send, 404, "no such bucket\n")
            return
        signer = await store.url_signer()  # type: ignore[attr-defined]
        if method == "POST":
            await self._post(store, signer, scope, receive, send)
            return
        query = scope.get("query_string", b"").decode("latin-1")
        try:
            key = signer.verify_path(quoted_key, query, "PUT" if method == "PUT" else "GET")
        except InvalidSignature as exc:
            await _respond(send, 403, f"{exc}\n")
            return
        if method == "PUT":
            await self._put(store, key, scope, receive, send)
            return
        try:
            info = await store.head(key)
        except ObjectNotFound:
            await _respond(send, 404, "no such object\n")
            return
        await _serve(store, info, _headers(scope), method == "HEAD", send)

    async def _put(
        self, store: ImageStore, key: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        headers = _headers(scope)
        content_type = headers.get("content-type", DEFAULT_CONTENT_TYPE)
        try:
            info = await store.put(key, _body(receive), content_type=content_type)
        except (ValidationError, TypeError) as exc:
            await _respond(send, 400, f"{exc}\n")
            return
        await _respond(send, 200, "", extra=[(b"etag", _etag(info).encode())])

    async def _post(
        self, store: ImageStore, signer: UrlSigner, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """An upload form (see :meth:`ImageStore.presign_post`), checked as S3 checks it."""
        try:
            form = await read_upload_form(_body(receive), _headers(scope).get("content-type", ""))
            policy = signer.verify_post(form.fields)
        except InvalidSignature as exc:
            await _respond(send, 403, f"{exc}\n", extra=_CORS)
            return
        except ValidationError as exc:
            await _respond(send, 400, f"{exc}\n", extra=_CORS)
            return
        try:
            info = await store.put(
                policy.key,
                _within(form.file, policy.min_size, policy.max_size),
                content_type=policy.content_type,
            )
        except ValidationError as exc:
            await _respond(send, 400, f"{exc}\n", extra=_CORS)
            return
        await _respond(send, 204, "", extra=[(b"etag", _etag(info).encode()), *_CORS])


async def _within(chunks: AsyncIterator[bytes], low: int, high: int) -> AsyncIterator[bytes]:
    """``chunks``, failing the upload (so nothing is stored) outside ``low``-``high`` bytes."""
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > high:
            raise ValidationError(
                f"EntityTooLarge: the upload is larger than the {high} bytes its form allows"
            )
        yield chunk
    if size < low:
        raise ValidationError(
            f"EntityTooSmall: the upload has {size} bytes; its form needs at least {low}"
        )


_CORS: Final = [(b"access-control-allow-origin", b"*"), (b"access-control-expose-headers", b"etag")]
_CORS_PREFLIGHT: Final = [
    *_CORS,
    (b"access-control-allow-methods", b"GET, HEAD, PUT, POST"),
    (b"access-control-allow-headers", b"content-type, range, if-none-match"),
    (b"access-control-max-age", b"600"),
]


async def _serve(
    store: ImageStore, info: ObjectInfo, headers: dict[str, str], head_only: bool, send: Send
) -> None:
    etag = _etag(info)
    common = [
        (b"etag", etag.encode()),
        (b"accept-ranges", b"bytes"),
        (b"content-type", (info.content_type or DEFAULT_CONTENT_TYPE).encode("latin-1")),
        (b"content-disposition", content_disposition(info.key.rsplit("/", 1)[-1]).encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"cache-control", b"private, max-age=300"),
        *_CORS,
    ]
    if _matches(headers.get("if-none-match"), etag):
        await send({"type": "http.response.start", "status": 304, "headers": common})
        await send({"type": "http.response.body", "body": b""})
        return
    wanted = parse_range(headers.get("range"), info.size)
    if wanted == "unsatisfiable":
        await _respond(
            send, 416, "", extra=[(b"content-range", f"bytes */{info.size}".encode()), *_CORS]
        )
        return
    status, start, end = 200, 0, info.size
    if isinstance(wanted, tuple):
        status, (start, end) = 206, wanted
        common.append((b"content-range", f"bytes {start}-{end - 1}/{info.size}".encode()))
    common.append((b"content-length", str(end - start).encode()))
    await send({"type": "http.response.start", "status": status, "headers": common})
    if head_only or end == start:
        await send({"type": "http.response.body", "body": b""})
        return
    position = 0
    async for chunk in store.stream(info.key, chunk_size=CHUNK_SIZE):
        piece = chunk[max(start - position, 0) : max(end - position, 0)]
        position += len(chunk)
        if piece:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        if position >= end:
            break
    await send({"type": "http.response.body", "body": b""})


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """``(start, end)`` (end exclusive) of a single-range header; None: the whole object.

    Returns ``"unsatisfiable"`` for a range outside the object. Several ranges
    and malformed headers are ignored (the whole object is sent, as RFC 9110 allows).
    """
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":
        length = int(last)
        if length == 0:
            return "unsatisfiable"
        return max(size - length, 0), size
    start = int(first)
    end = size if last == "" else min(int(last) + 1, size)
    if start >= size or (last != "" and int(last) < start):
        return "unsatisfiable"
    return start, end


def content_disposition(filename: str) -> str:
    """An ``inline`` disposition that names the file safely in any browser."""
    fallback = _UNSAFE_FILENAME.sub("_", filename) or "download"
    return f"inline; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _etag(info: ObjectInfo) -> str:
    etag = info.etag or f'"{info.sha256 or ""}-{info.size}"'
    return etag if etag.startswith('"') else f'"{etag}"'


def _matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in header.split(",")]
    return "*" in tags or etag in tags


def _split_path(scope: Scope) -> tuple[str, str]:
    raw = scope.get("raw_path") or scope["path"].encode()
    path = raw.decode("latin-1").split("?", 1)[0]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    bucket, _, quoted_key = path.lstrip("/").partition("/")
    return unquote(bucket), quoted_key


def _headers(scope: Scope) -> dict[str, str]:
    return {
        name.decode("latin-1").lower(): value.decode("latin-1")
        for name, value in scope.get("headers", [])
    }


async def _body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ValidationError("the client disconnected before the upload ended")
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def _respond(
    send: Send, status: int, text: str, *, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = text.encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
