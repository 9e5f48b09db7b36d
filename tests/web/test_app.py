"""The signed-URL server, over real HTTP on loopback."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from demeter_storage.adapters.s3.store import S3ImageStore
from demeter_storage.web.app import SignedUrlApp, content_disposition, parse_range
from tests.web.live_server import PHOTO, Server, presign


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with Server(tmp_path) as running:
        running.run(running.store.put("s1/leaf photo é.jpg", PHOTO, content_type="image/jpeg"))
        yield running


def fetch(
    url: str, method: str = "GET", headers: dict[str, str] | None = None, data: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_a_signed_url_serves_the_photo_with_its_headers(server: Server) -> None:
    status, headers, body = fetch(presign(server))
    assert (status, body) == (200, PHOTO)
    assert headers["content-type"] == "image/jpeg"
    assert headers["content-length"] == str(len(PHOTO))
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["content-disposition"] == (
        "inline; filename=\"leaf photo _.jpg\"; filename*=UTF-8''leaf%20photo%20%C3%A9.jpg"
    )
    assert headers["etag"].startswith('"')


def test_head_sends_the_headers_only(server: Server) -> None:
    status, headers, body = fetch(presign(server), method="HEAD")
    assert (status, body) == (200, b"")
    assert headers["content-length"] == str(len(PHOTO))


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-99", 0, 100),
        ("bytes=10000-", 10000, 10240),
        ("bytes=-40", 10200, 10240),
        ("bytes=300000-300001", None, None),
        ("bytes=5-999999", 5, 10240),
    ],
)
def test_ranges(server: Server, header: str, start: int | None, end: int | None) -> None:
    status, headers, body = fetch(presign(server), headers={"Range": header})
    if start is None:
        assert status == 416
        assert headers["content-range"] == f"bytes */{len(PHOTO)}"
        return
    assert status == 206
    assert body == PHOTO[start:end]
    assert headers["content-range"] == f"bytes {start}-{end - 1}/{len(PHOTO)}"  # type: ignore[operator]


def test_if_none_match_answers_not_modified(server: Server) -> None:
    url = presign(server)
    _, headers, _ = fetch(url)
    status, _, body = fetch(url, headers={"If-None-Match": headers["etag"]})
    assert (status, body) == (304, b"")
    assert fetch(url, headers={"If-None-Match": '"other"'})[0] == 200


def test_tampered_other_key_expired_and_future_urls_are_refused(server: Server) -> None:
    server.run(server.store.put("s1/other.jpg", b"other", content_type="image/jpeg"))
    url = presign(server)
    tampered = url[:-1] + ("0" if url[-1] != "0" else "1")
    other_key = presign(server, "s1/other.jpg").replace(
        "s1/other.jpg", "s1/leaf%20photo%20%C3%A9.jpg"
    )
    put_signature = presign(server, method="PUT", content_type="image/jpeg")
    for refused in (tampered, other_key, put_signature, url.split("?")[0]):
        status, _, body = fetch(refused)
        assert status == 403, refused
        assert b"request a new one" in body or b"malformed" in body
    future = presign(server)
    server.clock.advance(-3600)
    assert fetch(future)[0] == 403
    server.clock.advance(3600 + 601)
    assert fetch(url)[0] == 403


def test_a_signed_put_stores_the_body_once(server: Server) -> None:
    signed = server.run(
        server.store.presign("s2/new.png", expires_in=600, method="PUT", content_type="image/png")
    )
    url, needed = signed.url, signed.headers  # type: ignore[attr-defined]
    status, headers, _ = fetch(url, method="PUT", data=b"png bytes", headers=needed)
    assert status == 200
    info = server.run(server.store.head("s2/new.png"))
    assert info.content_type == "image/png"  # type: ignore[attr-defined]
    assert server.run(server.store.get("s2/new.png")) == b"png bytes"
    assert headers["etag"] == info.etag  # type: ignore[attr-defined]
    status, headers, _ = fetch(url, method="PUT", data=b"other bytes", headers=needed)
    assert status == 412
    assert {k.lower(): v for k, v in headers.items()}["connection"] == "close"
    assert server.run(server.store.get("s2/new.png")) == b"png bytes"
    get_url = presign(server, "s2/new.png")
    assert fetch(get_url, method="PUT", data=b"x", headers=needed)[0] == 403


def test_the_in_memory_store_is_served_too(server: Server) -> None:
    server.run(server.memory.put("s/a.png", b"memory bytes", content_type="image/png"))
    signed = server.run(server.memory.presign("s/a.png", expires_in=60))
    assert fetch(signed.url)[2] == b"memory bytes"  # type: ignore[attr-defined]


def test_unknown_buckets_objects_and_methods(server: Server) -> None:
    url = presign(server)
    assert fetch(url.replace("/photos/", "/elsewhere/"))[0] == 404
    server.run(server.store.delete("s1/leaf photo é.jpg"))
    assert fetch(url)[0] == 404
    assert fetch(url, method="DELETE")[0] == 405
    assert fetch(url, method="OPTIONS")[0] == 204


def test_stores_without_a_signer_are_refused() -> None:
    with pytest.raises(TypeError, match="S3 serves its own"):
        SignedUrlApp({"b": S3ImageStore.__new__(S3ImageStore)})


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("bytes=1-2,4-5", None),
        ("items=0-1", None),
        ("bytes=-", None),
        ("bytes=0-0", (0, 1)),
        ("bytes=-0", "unsatisfiable"),
        ("bytes=5-2", "unsatisfiable"),
        ("bytes=-500", (0, 100)),
    ],
)
def test_parse_range(header: str | None, expected: object) -> None:
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize(
    ("name", "fallback"),
    [('a"b.jpg', "a_b.jpg"), ("x\r\nSet-Cookie: y.jpg", "x__Set-Cookie_ y.jpg"), ("", "download")],
)
def test_content_disposition_cannot_break_the_header(name: str, fallback: str) -> None:
    header = content_disposition(name)
    assert header.startswith(f"inline; filename=\"{fallback}\"; filename*=UTF-8''")
    assert "\r" not in header
    assert "\n" not in header
