"""Serve the local store's signed URLs over HTTP: a small ASGI app.

S3 serves its presigned URLs itself; the local (and in-memory) stores hand
out URLs of the same shape that this app answers, so front-end code works
unchanged against disk and S3::

    from demeter_storage.web.app import SignedUrlApp
    app = SignedUrlApp.for_service(service)  # mount it in FastAPI/Starlette, or:
    # demeter-storage serve --port 8765

Requests are ``/{bucket}/{key}?X-Demeter-...``. A GET or HEAD needs a GET
signature, a PUT a PUT signature, each for that very key and still valid;
anything else is answered 403 before the store is touched. A signed PUT only
creates, and only with the content type its URL pins: it must send that
``Content-Type`` (403 otherwise) and ``If-None-Match: *`` (428 otherwise), and
gets 412 if an object is stored under the key. A POST to ``/{bucket}`` is an
upload form from :meth:`ImageStore.presign_post`: its signed policy fixes the
key, the content type and the size range, and an upload outside them is
refused (403 or 400) and leaves nothing stored. GETs support one byte range,
``ETag`` and ``If-None-Match``, and send the stored content type with a
``Content-Disposition`` whose filename cannot break the header.

A client's mistake is always a 4xx, and a body the app refuses is not read:
the answer closes the connection instead. Store failures map to their
meaning (see :func:`~demeter_storage.web.http.answer_for`): 404, 412, 503
with ``Retry-After`` when the breaker knows it, other failures a short 500.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Final

from demeter_storage.domain.errors import (
    InvalidSignature,
    ObjectExists,
    StorageError,
    ValidationError,
)
from demeter_storage.domain.objects import DEFAULT_CONTENT_TYPE, ObjectInfo
from demeter_storage.ports import ImageStore, ServesSignedUrls, UrlVerifier
from demeter_storage.web.forms import read_upload_form
from demeter_storage.web.http import (
    Exchange,
    Message,
    Receive,
    Refused,
    Scope,
    Send,
    answer_for,
    content_disposition,
    etag_of,
    logger,
    matches,
    parse_range,
    split_path,
)

if TYPE_CHECKING:
    from demeter_storage.service.image_service import ImageService

__all__ = [
    "CHUNK_SIZE",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "SignedUrlApp",
    "SigningStore",
    "content_disposition",
    "parse_range",
]

CHUNK_SIZE: Final = 256 * 1024
ONLY_CREATE: Final = "*"
_METHODS: Final = ("GET", "HEAD", "PUT", "POST")
_PREFLIGHT: Final = [
    (b"access-control-allow-methods", b"GET, HEAD, PUT, POST"),
    (b"access-control-allow-headers", b"content-type, range, if-none-match"),
    (b"access-control-max-age", b"600"),
]


SigningStore = ServesSignedUrls
"""A store whose URLs this app can verify (the local and in-memory stores)."""


class SignedUrlApp:
    """An ASGI app serving signed URLs of one or more stores, by bucket name.

    Args:
        stores: the stores to serve; each needs ``url_signer()`` (the local and
            in-memory stores have it; S3 serves its own URLs).
    """

    def __init__(self, stores: Mapping[str, ImageStore]) -> None:
        for name, store in stores.items():
            if not isinstance(store, ServesSignedUrls):
                raise TypeError(
                    f"store {name!r} ({type(store).__name__}) has no url_signer(): only the "
                    "local and in-memory stores' URLs are served here (S3 serves its own)"
                )
        self.stores = dict(stores)

    @classmethod
    def for_service(cls, service: ImageService) -> SignedUrlApp:
        """The app for both buckets of ``service`` (which must not be on S3)."""
        return cls({store.name: store for store in (service.originals, service.visualizations)})

    async def signer(self, bucket: str) -> UrlVerifier:
        """The verifier of ``bucket``'s URLs (the bucket is one of :attr:`stores`)."""
        store = self.stores[bucket]
        if not isinstance(store, ServesSignedUrls):  # pragma: no cover - refused in __init__
            raise TypeError(f"store {bucket!r} does not sign URLs")
        return await store.url_signer()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one ASGI connection; no exception leaves it (cancellation aside)."""
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        exchange = Exchange(scope, receive, send)
        try:
            await self._handle(exchange)
        except Exception as exc:  # every failure gets an answer, never a traceback
            await _fail(exchange, exc)

    async def _handle(self, exchange: Exchange) -> None:
        method = exchange.scope["method"]
        if method == "OPTIONS":
            await exchange.respond(204, "", _PREFLIGHT)
            return
        if method not in _METHODS:
            await exchange.respond(
                405, "method not allowed\n", [(b"allow", ", ".join(_METHODS).encode())]
            )
            return
        bucket, quoted_key = split_path(exchange.scope)
        store = self.stores.get(bucket)
        if store is None:
            raise Refused(404, "no such bucket")
        signer = await self.signer(bucket)
        if method == "POST":
            await self._post(store, signer, exchange)
            return
        query = exchange.scope.get("query_string", b"").decode("latin-1")
        grant = signer.verify_grant(quoted_key, query, "PUT" if method == "PUT" else "GET")
        if method == "PUT":
            await self._put(store, grant.key, grant.content_type, exchange)
            return
        info = await store.head(grant.key)
        await _serve(store, info, exchange, head_only=method == "HEAD")

    async def _put(
        self, store: ImageStore, key: str, pinned: str | None, exchange: Exchange
    ) -> None:
        """A signed PUT: only the pinned content type, only creating (checked before the body)."""
        if pinned is None:
            raise InvalidSignature("the PUT URL pins no content type; request a new one")
        sent = exchange.headers.one("content-type")
        if sent != pinned:
            raise Refused(
                403,
                f"this URL uploads Content-Type {pinned!r} only (got {sent!r}); send that "
                "header exactly",
            )
        if exchange.headers.joined("if-none-match") != ONLY_CREATE:
            raise Refused(
                428,
                "a signed PUT only creates: send If-None-Match: * (the URL's headers list it)",
            )
        if await store.exists(key):
            raise ObjectExists(key, store.name)  # answered before a byte of the body is read
        # The store checks again as it commits: another writer may win the race meanwhile.
        info = await store.put(key, exchange.body(), content_type=pinned, if_absent=True)
        await exchange.respond(200, "", [(b"etag", etag_of(info).encode())])

    async def _post(self, store: ImageStore, signer: UrlVerifier, exchange: Exchange) -> None:
        """An upload form (see :meth:`ImageStore.presign_post`), checked as S3 checks it."""
        form = await read_upload_form(exchange.body(), exchange.headers.one("content-type") or "")
        policy = signer.verify_post(form.fields)
        info = await store.put(
            policy.key,
            _within(form.file, policy.min_size, policy.max_size),
            content_type=policy.content_type,
        )
        await exchange.drain()  # the form's closing boundary: keep the connection if small
        await exchange.respond(204, "", [(b"etag", etag_of(info).encode())])


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


async def _fail(exchange: Exchange, exc: Exception) -> None:
    status, text, extra = answer_for(exc)
    method, path = exchange.scope.get("method"), exchange.scope.get("path")
    if status >= 500:
        # A bug (not a StorageError) keeps its traceback in the log; a store's failure is one line.
        logger.warning(
            "%s %s failed: %s: %s",
            method,
            path,
            type(exc).__name__,
            exc,
            exc_info=not isinstance(exc, StorageError),
        )
    else:
        logger.debug("%s %s refused (%d): %s", method, path, status, exc)
    if exchange.started:
        # The status line is out: ending the body short is the only signal left,
        # and the server closes the connection on an unfinished answer.
        logger.warning("%s %s: the answer was cut short", method, path)
        return
    await exchange.respond(status, text, extra)


async def _serve(store: ImageStore, info: ObjectInfo, exchange: Exchange, head_only: bool) -> None:
    etag = etag_of(info)
    common = [
        (b"etag", etag.encode()),
        (b"accept-ranges", b"bytes"),
        (b"content-type", (info.content_type or DEFAULT_CONTENT_TYPE).encode("latin-1")),
        (b"content-disposition", content_disposition(info.key.rsplit("/", 1)[-1]).encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"cache-control", b"private, max-age=300"),
    ]
    if matches(exchange.headers.joined("if-none-match"), etag):
        await exchange.start(304, common)
        await exchange.send_body(b"", more=False)
        return
    # A Range sent twice is malformed: ignored, like any other (RFC 9110 allows it).
    wanted = parse_range(exchange.headers.single("range"), info.size)
    if wanted == "unsatisfiable":
        await exchange.respond(416, "", [(b"content-range", f"bytes */{info.size}".encode())])
        return
    status, start, end = 200, 0, info.size
    if isinstance(wanted, tuple):
        status, (start, end) = 206, wanted
        common.append((b"content-range", f"bytes {start}-{end - 1}/{info.size}".encode()))
    common.append((b"content-length", str(end - start).encode()))
    await exchange.start(status, common)
    if head_only or end == start:
        await exchange.send_body(b"", more=False)
        return
    position = 0
    async for chunk in store.stream(info.key, chunk_size=CHUNK_SIZE):
        piece = chunk[max(start - position, 0) : max(end - position, 0)]
        position += len(chunk)
        if piece:
            await exchange.send_body(piece, more=True)
        if position >= end:
            break
    await exchange.send_body(b"", more=False)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
