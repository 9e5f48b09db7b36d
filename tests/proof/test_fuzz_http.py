"""The signed-URL app against hostile HTTP requests, in process (ASGI scopes built here).

Hypothesis draws the method, the path (a signed URL, bent or not, or any
path at all), the headers (``Range`` with huge numbers and odd syntax,
``Content-Type`` and ``If-None-Match`` right, wrong, duplicated, oversized or
not text, headers nobody asked for) and the body (none, a little, a form cut
short or grown too large, or a lazily produced 1 GiB). Whatever arrives:

* no exception leaves the app, and every answer is a complete, well-formed one;
* no 5xx, except 503 while the store is genuinely unavailable;
* a body the app did not read to its end is never left on a kept-alive
  connection (the answer says ``Connection: close``); a refused PUT reads
  none of its body, a refused POST a bounded part;
* a PUT is stored exactly when it is the signed URL, with its pinned
  ``Content-Type`` (once) and ``If-None-Match: *``, for a free key; a range
  answer holds exactly the bytes it claims; nothing else changes in the store.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from demeter_storage.adapters.local.store import LocalImageStore
from demeter_storage.adapters.memory.store import InMemoryImageStore
from demeter_storage.domain.errors import StorageUnavailable
from demeter_storage.domain.objects import ObjectInfo
from demeter_storage.testing import ManualClock
from demeter_storage.web.app import SignedUrlApp
from demeter_storage.web.forms import MAX_FIELD_BYTES, MAX_FIELDS, MAX_HEADER_BYTES
from tests.proof.strategies import JPEG, fuzz_settings
from tests.web.asgi_client import Answer, call, local_path

BASE = "http://testserver"
KEY = "s1/leaf \u00e9.jpg"
CONTENT = JPEG + bytes(range(256)) * 12  # 3,092 bytes
NEW_KEY = "s2/new.png"
PINNED = ["image/png", 'image/png; name="a b"']
FORM_MAX = 64
GIB = 1024**3
CHUNK = 64 * 1024
POST_READ_BOUND = MAX_FIELDS * (MAX_FIELD_BYTES + 2 * MAX_HEADER_BYTES) + 2 * CHUNK
"""The most a refused form may have read: its fields' limits, plus a chunk either side."""


class DownStore(InMemoryImageStore):
    """An in-memory store whose backend is unreachable (as a tripped breaker reports it)."""

    async def _head(self, key: str) -> ObjectInfo:
        raise StorageUnavailable("backend down", retry_after=30.0)

    async def _put(self, *args: Any, **kwargs: Any) -> ObjectInfo:
        raise StorageUnavailable("backend down", retry_after=30.0)


class Site:
    """Three buckets: a local store, an in-memory one, and one whose backend is down."""

    def __init__(self, root: Path) -> None:
        self.clock = ManualClock()
        self.stores: dict[str, Any] = {
            "photos": LocalImageStore(
                root / "photos", base_url=f"{BASE}/photos", clock=self.clock.now, durable=False
            ),
            "viz": InMemoryImageStore("viz", base_url=f"{BASE}/viz", clock=self.clock.now),
            "down": DownStore("down", base_url=f"{BASE}/down", clock=self.clock.now),
        }
        self.app = SignedUrlApp(self.stores)

    async def fill(self) -> None:
        for name in ("photos", "viz"):
            await self.stores[name].put(KEY, CONTENT, content_type="image/jpeg")


@pytest.fixture
def site(loop: asyncio.Runner, tmp_path: Path) -> Site:
    running = Site(tmp_path)
    loop.run(running.fill())
    return running


# Strategies: the pieces of a hostile request.

LATIN1 = st.characters(codec="latin-1")
digits = st.one_of(
    st.integers(0, 4000).map(str),
    st.integers(0, 10**40).map(str),
    st.builds(lambda d, n: d * n, st.sampled_from("0123456789"), st.integers(1, 6000)),
    st.builds(lambda n, tail: "0" * n + tail, st.integers(1, 5000), st.integers(0, 99).map(str)),
    st.just(""),
)
range_values = st.one_of(
    st.builds(
        "{}={}-{}".format,
        st.sampled_from(["bytes", "BYTES", "Bytes", "bits", "", " bytes", "bytes "]),
        digits,
        digits,
    ),
    st.lists(st.builds("{}-{}".format, digits, digits), min_size=2, max_size=4).map(
        lambda ranges: "bytes=" + ",".join(ranges)
    ),
    st.sampled_from(
        [
            *("bytes=-", "bytes=--1", "bytes=1-2-3", "bytes=\u0663-5", "bytes=\uff11-2"),
            *("bytes=0x1-2", "bytes=+1-2", "bytes=1e3-", "bytes=1_000-", "bytes=-0"),
            *("bytes= 1-2", "bytes=0-0"),
        ]
    ),
    st.text(st.sampled_from("bytes=0123456789-, \t;"), max_size=40),
)
small_ranges = st.tuples(st.integers(0, len(CONTENT) - 1), st.integers(0, len(CONTENT) - 1)).map(
    lambda pair: f"bytes={min(pair)}-{max(pair)}"
)
header_values = st.one_of(
    st.binary(max_size=64),
    st.text(LATIN1, max_size=64),
    st.builds(
        lambda c, n: c * n,
        st.sampled_from(["a", ",", "*", "\xff", "\x00"]),
        st.integers(1, 100_000),
    ),
)
odd_headers = st.tuples(
    st.one_of(
        st.sampled_from(
            [
                *("range", "content-type", "if-none-match", "content-length"),
                *("transfer-encoding", "expect", "host", "connection", "Content-Type", "RANGE"),
                "x-demeter-signature",
            ]
        ),
        st.binary(min_size=1, max_size=16),
    ),
    header_values,
)
inm_values = st.one_of(
    st.sampled_from(["*", " * ", '"abc"', "W/*", "", "*, *", '*, "x"', "\x00*"]), header_values
)
content_types = st.one_of(
    st.sampled_from(["image/png", "image/PNG", "image/jpeg", "", *PINNED]), header_values
)
methods = st.one_of(
    st.sampled_from(["GET", "GET", "HEAD", "PUT", "PUT", "POST", "POST", "OPTIONS"]),
    st.sampled_from(["DELETE", "get", "PATCH", "TRACE", "CONNECT", "", "GET "]),
    st.text(LATIN1, max_size=10),
)
paths = st.one_of(
    st.text(LATIN1, max_size=60).map(lambda text: "/" + text),
    st.lists(
        st.sampled_from(["photos", "viz", "down", "s1", "..", "%2f", "%ff", "%", "é", ""]),
        max_size=5,
    ).map(lambda parts: "/" + "/".join(parts)),
)


def encode_form(fields: dict[str, str], file: bytes, boundary: str = "fuzzBoundary0") -> bytes:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n".encode()
        + file
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return b"".join(parts)


def _bytes(value: str | bytes) -> bytes:
    if isinstance(value, bytes):
        return value
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")


def _mutate(text: str, draw: st.DataObject) -> str:
    for _ in range(draw.draw(st.integers(1, 3), label="edits")):
        position = draw.draw(st.integers(0, max(len(text) - 1, 0)))
        char = draw.draw(st.sampled_from("0a%/?&=.é\xff \t"))
        how = draw.draw(st.sampled_from(["replace", "insert", "delete"]))
        keep = text[position + 1 :] if how != "insert" else text[position:]
        text = text[:position] + ("" if how == "delete" else char) + keep
    return text


# One request.


async def _request(site: Site, draw: st.DataObject) -> None:
    bucket = draw.draw(st.sampled_from(["photos", "viz", "photos", "viz", "down"]), label="bucket")
    store = site.stores[bucket]
    kind = draw.draw(st.sampled_from(["get-url", "put-url", "form", "path"]), label="target")
    natural = {"get-url": "GET", "put-url": "PUT", "form": "POST"}.get(kind, "GET")
    method = draw.draw(
        st.sampled_from([natural, natural, natural, "HEAD", "other"]), label="method"
    )
    if method == "other":
        method = draw.draw(methods, label="any method")
    pinned = draw.draw(st.sampled_from(PINNED), label="pinned")
    headers: list[tuple[bytes, bytes]] = []
    body, body_size, fields, signed_target = b"", None, None, None
    if kind == "get-url":
        target = local_path((await store.presign(KEY, expires_in=600)).url)
        wants_range = draw.draw(st.sampled_from(["none", "small", "odd", "twice"]), label="range")
        if wants_range == "small":
            headers.append((b"range", draw.draw(small_ranges, label="range value").encode()))
        elif wants_range in ("odd", "twice"):
            for _ in range(1 if wants_range == "odd" else 2):
                headers.append((b"range", _bytes(draw.draw(range_values, label="range value"))))
        if draw.draw(st.booleans(), label="if-none-match"):
            headers.append((b"if-none-match", _bytes(draw.draw(inm_values, label="inm"))))
    elif kind == "put-url":
        signed = await store.presign(NEW_KEY, expires_in=600, method="PUT", content_type=pinned)
        target = signed_target = local_path(signed.url)
        if draw.draw(st.booleans(), label="the headers the URL lists"):
            headers += [(b"content-type", pinned.encode()), (b"if-none-match", b"*")]
        else:
            for _ in range(draw.draw(st.integers(0, 2), label="content-types")):
                value = draw.draw(st.one_of(st.just(pinned), content_types), label="content-type")
                headers.append((b"content-type", _bytes(value)))
            for _ in range(draw.draw(st.integers(0, 2), label="if-none-matches")):
                headers.append((b"if-none-match", _bytes(draw.draw(inm_values, label="inm"))))
    elif kind == "form":
        form = await store.presign_post(
            NEW_KEY, content_type="image/jpeg", max_size=FORM_MAX, expires_in=600
        )
        target = local_path(form.url)
        fields = dict(form.fields)
        headers.append((b"content-type", b"multipart/form-data; boundary=fuzzBoundary0"))
    else:
        target = draw.draw(paths, label="path")
    if draw.draw(st.integers(0, 3), label="bend the target") == 0:
        # A server's path always starts with '/'; '//photos/...' names the same object.
        target = "/" + _mutate(target, draw).lstrip("/")
    odd = draw.draw(st.lists(odd_headers, max_size=3), label="odd headers")
    headers += [(_bytes(name), _bytes(value)) for name, value in odd]

    shape = draw.draw(
        st.sampled_from(["none", "small", "form", "cut form", "huge form", "huge"]), label="body"
    )
    if shape == "small":
        body = draw.draw(st.binary(max_size=4096), label="small body")
    elif shape in ("form", "cut form", "huge form"):
        size = FORM_MAX * 20 if shape == "huge form" else draw.draw(st.integers(0, FORM_MAX))
        body = encode_form(fields or {"key": NEW_KEY}, (JPEG * 50)[:size])
        if shape == "cut form":
            body = body[: draw.draw(st.integers(0, len(body)), label="cut at")]
    elif shape == "huge" and method != "PUT":  # a PUT may be valid: it would store 1 GiB
        body_size = GIB

    answer = await call(site.app, method, target, headers, body, body_size=body_size, chunk=CHUNK)
    event(
        f"{kind} {method if method in ('GET', 'HEAD', 'PUT', 'POST') else 'other'}: {answer.status}"
    )
    await _judge(site, bucket, method, kind, target, pinned, headers, body, answer, signed_target)


async def _judge(
    site: Site,
    bucket: str,
    method: str,
    kind: str,
    target: str,
    pinned: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    answer: Answer,
    signed_target: str | None,
) -> None:
    down = bucket == "down"
    assert answer.complete, "the answer ended short"
    assert answer.status < 500 or (answer.status == 503 and down), answer
    if answer.status == 503:
        assert answer.header("retry-after") == "30"
    assert answer.body_read_to_end or answer.closes, "a partly read body on a kept connection"
    if answer.status >= 400 and method == "PUT":
        assert answer.bytes_read == 0, f"a refused PUT read {answer.bytes_read} bytes"
    if answer.status >= 400:
        assert answer.bytes_read <= POST_READ_BOUND, answer.bytes_read

    def values(name: bytes) -> list[str]:
        return [v.decode("latin-1").strip(" \t") for n, v in headers if n.lower() == name]

    if method == "PUT" and kind == "put-url" and not down:
        valid = (
            signed_target is not None
            and target.lstrip("/") == signed_target.lstrip("/")
            and values(b"content-type") == [pinned]
            and ", ".join(values(b"if-none-match")) == "*"
        )
        assert (answer.status == 200) == valid, (answer.status, answer.body, headers)
    store = site.stores[bucket]
    if answer.status == 200 and method == "PUT":
        info = await store.head(NEW_KEY)
        assert (info.content_type, await store.get(NEW_KEY)) == (pinned, body)
        await store.delete(NEW_KEY)
    if answer.status == 204 and method == "POST":
        assert 1 <= len(await store.get(NEW_KEY)) <= FORM_MAX
        await store.delete(NEW_KEY)
    if method == "GET" and answer.status in (200, 206, 416):
        _check_range(answer, values(b"range"))
    for name in ("photos", "viz"):
        each = site.stores[name]
        assert [info.key async for info in each.list()] == [KEY], name
        assert await each.get(KEY) == CONTENT


def _check_range(answer: Answer, ranges: list[str]) -> None:
    size = len(CONTENT)
    if answer.status == 200:
        assert answer.body == CONTENT
    elif answer.status == 416:
        assert answer.header("content-range") == f"bytes */{size}"
    else:
        found = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", answer.header("content-range") or "")
        assert found is not None, answer.header("content-range")
        start, last, total = (int(group) for group in found.groups())
        assert total == size and start <= last < size
        assert answer.body == CONTENT[start : last + 1]
    # An oracle of its own for plain ranges inside the object: exactly those bytes.
    if len(ranges) == 1 and (plain := re.fullmatch(r"bytes=(\d{1,5})-(\d{1,5})", ranges[0])):
        first, last = int(plain.group(1)), int(plain.group(2))
        if first <= last < size:
            assert (answer.status, answer.body) == (206, CONTENT[first : last + 1])


@fuzz_settings()
@given(draw=st.data())
def test_hostile_requests_get_a_complete_4xx_or_their_due(
    loop: asyncio.Runner, site: Site, draw: st.DataObject
) -> None:
    loop.run(_request(site, draw))
