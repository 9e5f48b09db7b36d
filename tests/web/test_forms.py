"""The streaming upload-form reader, and upload forms posted to the local store over HTTP."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from demeter_storage.web.forms import FormError, boundary_of, read_upload_form
from tests.web.live_server import Server

BOUNDARY = "----demeterBoundary7MA4YWxkTrZu0gW"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def encode_form(fields: dict[str, str], file: bytes | None, filename: str = "a.jpg") -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    if file is not None:
        parts.append(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{filename}"\r\nContent-Type: image/jpeg\r\n\r\n'.encode()
            + file
            + b"\r\n"
        )
    parts.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(parts)


async def chunked(body: bytes, cuts: list[int]) -> AsyncIterator[bytes]:
    previous = 0
    for cut in sorted({min(c, len(body)) for c in cuts}):
        yield body[previous:cut]
        previous = cut
    yield body[previous:]


async def read(body: bytes, cuts: list[int]) -> tuple[dict[str, str], bytes, str | None]:
    form = await read_upload_form(chunked(body, cuts), CONTENT_TYPE)
    data = b"".join([chunk async for chunk in form.file])
    return form.fields, data, form.filename


# The file may contain anything but its delimiter (senders pick a boundary the
# content lacks, RFC 2046), including what nearly is one.
FILES = st.one_of(
    st.binary(max_size=2000),
    st.just(f"\r\n--{BOUNDARY[:-1]}".encode() * 3),
    st.just(f"--{BOUNDARY}\r\n".encode()),
)


@settings(max_examples=300, deadline=None)
@given(
    fields=st.dictionaries(
        st.sampled_from(["key", "Content-Type", "policy", "x-demeter-signature", "acl"]),
        st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n")),
    ),
    file=FILES,
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=12),
)
def test_any_split_of_the_body_reads_the_same_form(
    fields: dict[str, str], file: bytes, cuts: list[int]
) -> None:
    assert asyncio.run(read(encode_form(fields, file), cuts)) == (fields, file, "a.jpg")


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (encode_form({"key": "a"}, None), CONTENT_TYPE, "no 'file' part"),
        (encode_form({"key": "a"}, b"xyz")[:-30], CONTENT_TYPE, "cut short"),
        (b"garbage without boundaries", CONTENT_TYPE, "preamble"),
        (encode_form({"key": "a"}, b"x"), "application/x-www-form-urlencoded", "multipart"),
        (encode_form({"key": "a"}, b"x"), "multipart/form-data", "no boundary"),
        (encode_form({"key": "x" * 70_000}, b"x"), CONTENT_TYPE, "longer than"),
        (encode_form({f"f{i}": "v" for i in range(40)}, b"x"), CONTENT_TYPE, "more than 32"),
        (
            f"--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nv\r\n--{BOUNDARY}--".encode(),
            CONTENT_TYPE,
            "no Content-Disposition",
        ),
    ],
    ids=[
        "no-file",
        "cut-short",
        "no-boundary-in-body",
        "urlencoded",
        "no-boundary-param",
        "huge-field",
        "many-fields",
        "no-disposition",
    ],
)
def test_malformed_forms_are_refused(body: bytes, content_type: str, message: str) -> None:
    async def attempt() -> None:
        form = await read_upload_form(chunked(body, [7, 100]), content_type)
        async for _ in form.file:
            pass

    with pytest.raises(FormError, match=message):
        asyncio.run(attempt())


def test_quoted_boundaries_are_understood() -> None:
    assert boundary_of('multipart/form-data; boundary="a b"') == b"a b"


# Over real HTTP: the local store's forms, served by uvicorn.


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with Server(tmp_path) as running:
        yield running


def form_for(server: Server, key: str = "s1/a.jpg", max_size: int = 100) -> tuple[str, dict]:
    upload = server.run(
        server.store.presign_post(key, content_type="image/jpeg", max_size=max_size, expires_in=60)
    )
    return upload.url, dict(upload.fields)  # type: ignore[attr-defined]


def post(url: str, fields: dict[str, str], body: bytes) -> httpx.Response:
    return httpx.post(url, data=fields, files={"file": ("a.jpg", body, "image/jpeg")}, timeout=10)


def stored(server: Server, key: str = "s1/a.jpg") -> bool:
    return bool(server.run(server.store.exists(key)))


def test_a_form_that_follows_its_policy_is_stored(server: Server) -> None:
    url, fields = form_for(server)
    assert url == f"http://127.0.0.1:{server.port}/photos"
    response = post(url, fields, b"\xff\xd8\xff" + b"j" * 97)
    assert response.status_code == 204, response.text
    assert response.headers["etag"]
    assert response.headers["access-control-allow-origin"] == "*"
    info = server.run(server.store.head("s1/a.jpg"))
    assert (info.size, info.content_type) == (100, "image/jpeg")  # type: ignore[attr-defined]


def tampered_policy(fields: dict[str, str]) -> dict[str, str]:
    document = json.loads(base64.b64decode(fields["policy"]))
    document["conditions"][3][2] = 10**9
    return {**fields, "policy": base64.b64encode(json.dumps(document).encode()).decode()}


@pytest.mark.parametrize(
    ("change", "status"),
    [
        (lambda f: {**f, "key": "s1/other.jpg"}, 403),
        (lambda f: {**f, "Content-Type": "image/png"}, 403),
        (tampered_policy, 403),
        (lambda f: {k: v for k, v in f.items() if k != "x-demeter-signature"}, 403),
        (lambda f: {**f, "policy": "!!not base64!!"}, 403),
    ],
    ids=["other-key", "other-type", "tampered-policy", "unsigned", "garbled-policy"],
)
def test_forms_bent_away_from_their_policy_are_refused(
    server: Server, change: object, status: int
) -> None:
    url, fields = form_for(server)
    response = post(url, change(fields), b"\xff\xd8\xff" + b"j" * 20)  # type: ignore[operator]
    assert response.status_code == status, response.text
    assert not stored(server)
    assert not stored(server, "s1/other.jpg")


def test_sizes_outside_the_range_and_expired_forms_are_refused(server: Server) -> None:
    url, fields = form_for(server, max_size=100)
    too_large = post(url, fields, b"x" * 101)
    empty = post(url, fields, b"")
    assert (too_large.status_code, empty.status_code) == (400, 400)
    assert "EntityTooLarge" in too_large.text
    assert "EntityTooSmall" in empty.text
    server.clock.advance(61)
    expired = post(url, fields, b"x" * 10)
    assert expired.status_code == 403
    assert "expired" in expired.text
    assert not stored(server)
    # No partial or temporary file left: only the store's signing key is there.
    files = [p for p in Path(server.store.root).rglob("*") if p.is_file()]
    assert [p.relative_to(server.store.root).parts[0] for p in files] == [".demeter"]


def test_a_form_of_another_store_is_refused(server: Server) -> None:
    url, fields = form_for(server)
    other = url.rsplit("/", 1)[0] + "/scratch"
    assert post(other, fields, b"x").status_code == 403


def test_a_large_upload_streams_through(server: Server) -> None:
    size = 3 * 1024 * 1024 + 17
    url, fields = form_for(server, key="s1/big.jpg", max_size=size)
    body = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    assert post(url, fields, body).status_code == 204
    assert server.run(server.store.get("s1/big.jpg")) == body


def test_a_form_that_is_not_multipart_is_a_bad_request(server: Server) -> None:
    url, fields = form_for(server)
    response = httpx.post(url, content=urllib.parse.urlencode(fields), timeout=10)
    assert response.status_code == 400
