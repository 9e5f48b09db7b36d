"""The signed-URL app against hostile clients, called in process (``tests.web.asgi_client``).

Every answer is checked for what a server needs: no exception leaves the app,
no client mistake is a 5xx, a refused body is not read (and the answer says
``Connection: close``), and a store failure maps to the status it means.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

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
from tests.web.asgi_client import BASE, GIB, call, local_path

PHOTO = bytes(range(256)) * 40  # 10,240 bytes


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
