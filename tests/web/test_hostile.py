"""The signed-URL app against hostile clients, in process: ASGI scopes built here.

Every answer is checked for what a server needs: no exception leaves the app,
no client mistake is a 5xx, a refused body is not read (and the answer says
``Connection: close``), and a store failure maps to the status it means.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import attrs
import pytest

from demeter_storage.adapters.local.store import LocalImageStore
from demeter_storage.adapters.memory.store import InMemoryImageStore
from demeter_storage.domain.errors import (
    ConfigurationError,
    IntegrityError,
    ObjectChanged,
    ObjectExists,
    ObjectNotFound,
    StorageError,
    StorageUnavailable,
    ValidationError,
)
from demeter_storage.domain.objects import ObjectInfo
from demeter_storage.testing import ManualClock
from demeter_storage.web.app import SignedUrlApp, parse_range

PHOTO = bytes(range(256)) * 40  # 10,240 bytes
GIB = 1024**3
BASE = "http://testserver"


@attrs.define
class Answer:
    """What the app sent for one request, and how much of the request body it read."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    complete: bool
    bytes_read: int
    body_read_to_end: bool

    def header(self, name: str) -> str | None:
        values = [v.decode("latin-1") for n, v in self.headers if n.decode().lower() == name]
        assert len(values) <= 1, f"{name} sent {len(values)} times"
        return values[0] if values else None

    @property
    def closes(self) -> bool:
        return (self.header("connection") or "").lower() == "close"


def scope_for(
    method: str,
    target: str,
    headers: Iterable[tuple[str | bytes, str | bytes]] = (),
) -> dict[str, Any]:
    """An HTTP scope as a server builds it from a request line and headers."""
    path, _, query = target.partition("?")
    raw_path = path.encode("latin-1")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": raw_path.decode("latin-1"),
        "raw_path": raw_path,
        "query_string": query.encode("latin-1"),
        "root_path": "",
        "headers": [
            (
                (n if isinstance(n, bytes) else n.encode("latin-1")).lower(),
                v if isinstance(v, bytes) else v.encode("latin-1"),
            )
            for n, v in headers
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


async def call(
    app: Any,
    method: str,
    target: str,
    headers: Iterable[tuple[str | bytes, str | bytes]] = (),
    body: bytes = b"",
    *,
    body_size: int | None = None,
    chunk: int = 64 * 1024,
    on_receive: Any = None,
) -> Answer:
    """Send one request to ``app``; ``body_size`` streams that many zero bytes instead of ``body``.

    The send side checks the ASGI message order as a server would (one start,
    then body messages, nothing after the last); any exception the app raises
    reaches the caller.
    """
    size = len(body) if body_size is None else body_size
    header_list = list(headers)
    if method in ("PUT", "POST") or size:
        header_list.append(("content-length", str(size)))
    sent = 0
    received = 0
    finished = False  # the body's last message was handed over

    async def receive() -> dict[str, Any]:
        nonlocal sent, received, finished
        received += 1
        if on_receive is not None:
            await on_receive(received)
        if finished:  # what a server says once the body is over: the client left
            return {"type": "http.disconnect"}
        count = min(chunk, size - sent)
        piece = body[sent : sent + count] if body_size is None else bytes(count)
        sent += count
        finished = sent >= size
        return {"type": "http.request", "body": piece, "more_body": not finished}

    start: dict[str, Any] = {}
    parts: list[bytes] = []
    done = False

    async def send(message: dict[str, Any]) -> None:
        nonlocal done
        assert not done, f"message after the response ended: {message['type']}"
        if not start:
            assert message["type"] == "http.response.start", message
            assert 100 <= message["status"] <= 599
            for name, value in message.get("headers", []):
                assert isinstance(name, bytes) and isinstance(value, bytes)
                assert b"\r" not in value and b"\n" not in value
            start.update(message)
            return
        assert message["type"] == "http.response.body", message
        parts.append(message.get("body", b""))
        done = not message.get("more_body", False)

    await app(scope_for(method, target, header_list), receive, send)
    assert start, "the app returned without answering"
    return Answer(
        status=start["status"],
        headers=list(start.get("headers", [])),
        body=b"".join(parts),
        complete=done,
        bytes_read=sent,
        body_read_to_end=finished or size == 0,
    )


def local_path(url: str) -> str:
    """The path and query of a signed URL, as the request line carries them."""
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def stores(tmp_path: Path, clock: ManualClock) -> dict[str, Any]:
    return {
        "photos": LocalImageStore(
            tmp_path / "photos", base_url=f"{BASE}/photos", clock=clock.now, durable=False
        ),
        "scratch": InMemoryImageStore("scratch", base_url=f"{BASE}/scratch", clock=clock.now),
    }


@pytest.fixture
async def app(stores: dict[str, Any]) -> SignedUrlApp:
    for store in stores.values():
        await store.put("s1/a.jpg", PHOTO, content_type="image/jpeg")
    return SignedUrlApp(stores)


async def get_url(store: Any, key: str = "s1/a.jpg") -> str:
    return local_path((await store.presign(key, expires_in=600)).url)


# Range: any number of digits, any syntax, never a 5xx.

HUGE = "9" * 5000


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"bytes={HUGE}-", "unsatisfiable"),
        (f"bytes=-{HUGE}", (0, 100)),
        (f"bytes=0-{HUGE}", (0, 100)),
        (f"bytes={'0' * 5000}5-9", (5, 10)),
        (f"bytes=5-{'0' * 5000}9", (5, 10)),
        (f"bytes={HUGE}-{HUGE}9", "unsatisfiable"),
        (f"bytes={HUGE}9-{HUGE}", "unsatisfiable"),
        ("bytes=-" + "0" * 5000, "unsatisfiable"),
        ("bytes=\u0663-5", None),  # Arabic-Indic digits are not HTTP digits
        ("bytes=\uff11-5", None),  # nor are fullwidth ones
        ("BYTES=1-2", (1, 3)),  # range units are case-insensitive (RFC 9110)
    ],
)
def test_parse_range_takes_numbers_of_any_length(header: str, expected: object) -> None:
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize(
    ("header", "status", "content"),
    [
        (f"bytes={HUGE}-", 416, b""),
        (f"bytes=-{HUGE}", 206, PHOTO),
        (f"bytes=0-{HUGE}", 206, PHOTO),
        (f"bytes=1-{HUGE}", 206, PHOTO[1:]),
        ("bytes=" + "1" * 20 + "-" + "2" * 20, 416, b""),
    ],
)
async def test_absurd_range_values_get_a_range_answer_not_a_server_error(
    app: SignedUrlApp, stores: dict[str, Any], header: str, status: int, content: bytes
) -> None:
    for store in stores.values():
        answer = await call(app, "GET", await get_url(store), [("range", header)])
        assert (answer.status, answer.body) == (status, content)
        assert answer.complete


@pytest.mark.parametrize(
    "headers",
    [
        [("range", b"bytes=\xff-\xfe")],
        [("range", "bytes=0-1"), ("range", "bytes=2-3")],
        [("if-none-match", b"\xc3\x28, \xe9*")],
        [("if-none-match", "," * 100_000)],
        [("x-anything", b"\x00\x01\x7f\xff" * 1000)],
        [(b"\xff\xfe", b"value")],
    ],
    ids=["range-not-utf8", "range-twice", "inm-not-utf8", "inm-100k", "binary", "odd-name"],
)
async def test_malformed_headers_on_a_get_are_ignored_not_a_server_error(
    app: SignedUrlApp, stores: dict[str, Any], headers: list[tuple[Any, Any]]
) -> None:
    answer = await call(app, "GET", await get_url(stores["photos"]), headers)
    assert (answer.status, answer.body) == (200, PHOTO)


# Store failures map to the status they mean.


class FailingStore(InMemoryImageStore):
    """An in-memory store whose reads fail with ``error`` (after ``after`` chunks for streams)."""

    error: BaseException | None = None
    after: int | None = None

    async def _head(self, key: str) -> ObjectInfo:
        if self.error is not None and self.after is None:
            raise self.error
        return await super()._head(key)

    async def _stream(self, key: str, chunk_size: int) -> AsyncIterator[bytes]:  # type: ignore[override]
        count = 0
        async for chunk in super()._stream(key, chunk_size):
            if self.error is not None and count == self.after:
                raise self.error
            count += 1
            yield chunk


@pytest.mark.parametrize(
    ("error", "status", "retry_after"),
    [
        (ObjectNotFound("s1/a.jpg", "photos"), 404, None),
        (ValidationError("that key is not allowed"), 400, None),
        (ObjectExists("s1/a.jpg"), 412, None),
        (ObjectChanged("s1/a.jpg"), 412, None),
        (StorageUnavailable("circuit open", retry_after=12.2), 503, "13"),
        (StorageUnavailable("circuit open", retry_after=0.01), 503, "1"),
        (StorageUnavailable("disk gone"), 503, None),
        (IntegrityError("bytes differ under /srv/secret/root"), 500, None),
        (ConfigurationError("permission denied under /srv/secret/root"), 500, None),
        (StorageError("file system error under /srv/secret/root"), 500, None),
        (RuntimeError("a bug under /srv/secret/root"), 500, None),
        (OSError(5, "Input/output error", "/srv/secret/root"), 500, None),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else None,
)
async def test_store_failures_map_to_their_status(
    error: BaseException, status: int, retry_after: str | None
) -> None:
    store = FailingStore("photos", base_url=f"{BASE}/photos")
    await store.put("s1/a.jpg", PHOTO, content_type="image/jpeg")
    store.error = error
    answer = await call(SignedUrlApp({"photos": store}), "GET", await get_url(store))
    assert answer.status == status
    assert answer.header("retry-after") == retry_after
    assert answer.complete
    if status >= 500:
        # A server's failure is told in a few words; its details (paths) stay in the log.
        assert b"/srv/secret" not in answer.body
        assert len(answer.body) < 200
    else:
        assert str(error).encode() in answer.body


async def test_a_failure_after_the_answer_started_ends_it_short_without_raising() -> None:
    store = FailingStore("photos", base_url=f"{BASE}/photos")
    await store.put("s1/a.jpg", PHOTO * 100, content_type="image/jpeg")
    store.error, store.after = StorageUnavailable("disk gone"), 1
    app = SignedUrlApp({"photos": store})
    answer = await call(app, "GET", await get_url(store))
    # The status line is out: the only honest signal left is an incomplete body.
    assert answer.status == 200
    assert not answer.complete
    assert 0 < len(answer.body) < len(PHOTO * 100)


# Refused bodies are never read (the connection is closed instead).


async def test_a_put_with_a_bad_signature_is_refused_without_reading_its_body(
    app: SignedUrlApp, stores: dict[str, Any]
) -> None:
    signed = await stores["photos"].presign(
        "s1/new.jpg", expires_in=600, method="PUT", content_type="image/jpeg"
    )
    answer = await call(
        app,
        "PUT",
        local_path(signed.url)[:-1] + "0",
        [("content-type", "image/jpeg"), ("if-none-match", "*")],
        body_size=GIB,
    )
    assert answer.status == 403
    assert answer.bytes_read == 0
    assert answer.closes


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "multipart/form-data", "multipart/form-data; boundary=x"],
)
async def test_a_refused_form_post_reads_a_bounded_part_of_its_body(
    app: SignedUrlApp, content_type: str
) -> None:
    answer = await call(app, "POST", "/photos", [("content-type", content_type)], body_size=GIB)
    assert answer.status == 400
    assert answer.bytes_read <= 128 * 1024
    assert answer.closes


async def test_a_get_with_an_unread_body_closes_the_connection(
    app: SignedUrlApp, stores: dict[str, Any]
) -> None:
    answer = await call(app, "GET", await get_url(stores["photos"]), body=b"x" * 10)
    assert (answer.status, answer.body) == (200, PHOTO)
    assert answer.closes


async def test_a_get_without_a_body_keeps_the_connection(
    app: SignedUrlApp, stores: dict[str, Any]
) -> None:
    answer = await call(app, "GET", await get_url(stores["photos"]))
    assert answer.status == 200
    assert not answer.closes


@pytest.mark.parametrize("method", ["DELETE", "PATCH", "get", "BREW", "GET\x00"])
async def test_other_methods_are_refused_without_reading_the_body(
    app: SignedUrlApp, stores: dict[str, Any], method: str
) -> None:
    answer = await call(app, method, await get_url(stores["photos"]), body_size=GIB)
    assert answer.status == 405
    assert (answer.bytes_read, answer.closes) == (0, True)


@pytest.mark.parametrize(
    "target",
    ["/", "", "/photos", "/photos/", "/%ff/x", "/photos/%ff%fe", "/photos/a?%ff=%fe&&&=", "//x"],
)
async def test_odd_paths_get_a_client_error(app: SignedUrlApp, target: str) -> None:
    answer = await call(app, "GET", target)
    assert 400 <= answer.status < 500
    assert answer.complete


async def test_lifespan_and_other_scopes_end_quietly(app: SignedUrlApp) -> None:
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    await asyncio.wait_for(app({"type": "websocket"}, receive, send), 5)
