"""Signed PUT URLs on the local server: they pin their content type and only create."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from demeter_storage.adapters.local.store import LocalImageStore
from demeter_storage.adapters.memory.store import InMemoryImageStore
from demeter_storage.testing import ManualClock
from demeter_storage.web.app import SignedUrlApp
from tests.web.asgi_client import BASE, GIB, call, local_path

NEW = "s2/new photo é.png"
BODY = b"\x89PNG\r\n\x1a\n png bytes"


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    clock = ManualClock()
    if request.param == "local":
        return LocalImageStore(
            tmp_path / "photos", base_url=f"{BASE}/photos", clock=clock.now, durable=False
        )
    return InMemoryImageStore("photos", base_url=f"{BASE}/photos", clock=clock.now)


@pytest.fixture
def app(store: Any) -> SignedUrlApp:
    return SignedUrlApp({"photos": store})


async def put_url(store: Any, key: str = NEW, content_type: str = "image/png") -> str:
    signed = await store.presign(key, expires_in=600, method="PUT", content_type=content_type)
    assert signed.headers == {"Content-Type": content_type, "If-None-Match": "*"}
    return local_path(signed.url)


GOOD = [("content-type", "image/png"), ("if-none-match", "*")]


async def test_a_put_with_the_pinned_headers_creates_the_object(
    app: SignedUrlApp, store: Any
) -> None:
    answer = await call(app, "PUT", await put_url(store), GOOD, BODY)
    assert answer.status == 200, answer.body
    info = await store.head(NEW)
    assert (info.content_type, await store.get(NEW)) == ("image/png", BODY)
    assert answer.header("etag") == info.etag
    assert answer.body_read_to_end
    assert not answer.closes


async def test_a_second_put_through_the_same_url_is_refused_and_changes_nothing(
    app: SignedUrlApp, store: Any
) -> None:
    url = await put_url(store)
    assert (await call(app, "PUT", url, GOOD, BODY)).status == 200
    again = await call(app, "PUT", url, GOOD, body_size=GIB)
    assert again.status == 412
    assert b"exists" in again.body
    assert (again.bytes_read, again.closes) == (0, True)
    assert await store.get(NEW) == BODY


async def test_a_put_onto_an_object_that_appears_meanwhile_is_refused(
    app: SignedUrlApp, store: Any
) -> None:
    """The store's own create-only check decides when another write wins the race."""
    url = await put_url(store)

    async def someone_else_writes(count: int) -> None:
        if count == 2:
            await store.put(NEW, b"theirs", content_type="image/png")

    answer = await call(app, "PUT", url, GOOD, BODY * 10, chunk=16, on_receive=someone_else_writes)
    assert answer.status == 412
    assert await store.get(NEW) == b"theirs"


@pytest.mark.parametrize(
    "content_type",
    [
        "image/jpeg",
        "image/PNG",
        "image/png; charset=x",
        "",
        b"image/png\xff",
        "image/png, image/png",
    ],
)
async def test_a_put_with_another_content_type_is_forbidden(
    app: SignedUrlApp, store: Any, content_type: str | bytes
) -> None:
    headers = [("content-type", content_type), ("if-none-match", "*")]
    answer = await call(app, "PUT", await put_url(store), headers, body_size=GIB)
    assert answer.status == 403
    assert b"image/png" in answer.body
    assert (answer.bytes_read, answer.closes) == (0, True)
    assert not await store.exists(NEW)


async def test_a_put_without_a_content_type_is_forbidden(app: SignedUrlApp, store: Any) -> None:
    answer = await call(app, "PUT", await put_url(store), [("if-none-match", "*")], BODY)
    assert answer.status == 403
    assert not await store.exists(NEW)


async def test_a_put_with_two_content_types_is_a_bad_request(app: SignedUrlApp, store: Any) -> None:
    headers = [("content-type", "image/png"), ("content-type", "image/png"), *GOOD[1:]]
    answer = await call(app, "PUT", await put_url(store), headers, BODY)
    assert answer.status == 400
    assert not await store.exists(NEW)


@pytest.mark.parametrize(
    "if_none_match",
    [None, '"abc"', "W/*", "", "*, *"],
)
async def test_a_put_must_carry_if_none_match_star(
    app: SignedUrlApp, store: Any, if_none_match: str | None
) -> None:
    headers = [("content-type", "image/png")]
    if if_none_match is not None:
        headers.append(("if-none-match", if_none_match))
    answer = await call(app, "PUT", await put_url(store), headers, body_size=GIB)
    assert answer.status == 428
    assert b"If-None-Match: *" in answer.body
    assert (answer.bytes_read, answer.closes) == (0, True)
    assert not await store.exists(NEW)


async def test_the_pinned_type_may_carry_parameters(app: SignedUrlApp, store: Any) -> None:
    pinned = 'image/png; name="a b"'
    url = await put_url(store, content_type=pinned)
    headers = [("content-type", f"  {pinned} "), ("if-none-match", " * ")]
    answer = await call(app, "PUT", url, headers, BODY)
    assert answer.status == 200, answer.body
    assert (await store.head(NEW)).content_type == pinned


async def test_a_put_url_cannot_be_bent_to_another_type_in_its_query(
    app: SignedUrlApp, store: Any
) -> None:
    url = (await put_url(store)).replace("image%2Fpng", "image%2Fjpeg")
    headers = [("content-type", "image/jpeg"), ("if-none-match", "*")]
    answer = await call(app, "PUT", url, headers, BODY)
    assert answer.status == 403
    assert not await store.exists(NEW)
