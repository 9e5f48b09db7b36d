"""Presign expiries, and the signed-URL server against tampered, expired and foreign URLs.

Expiries outside the documented ranges (1-168 hours for the service, 1 s to
7 days for the stores) are ``ValidationError``s, wrong types ``TypeError``s
(the service's hours: ``ValidationError`` too); inside them the URL lives
exactly as long as asked (S3's stable windows: never shorter, never past 7
days). ``SignedUrlApp``, reached through ``httpx.ASGITransport``, answers a URL
only if what it received is, value for value, what was signed, for that store,
key and method, and only from 60 s before its date until it expires.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import httpx
import pytest
from hypothesis import event, given, reject
from hypothesis import strategies as st

from demeter_storage.adapters.local.store import LocalImageStore
from demeter_storage.adapters.memory.store import InMemoryImageStore
from demeter_storage.adapters.s3.config import S3Config
from demeter_storage.adapters.s3.store import S3ImageStore
from demeter_storage.domain.errors import ValidationError
from demeter_storage.domain.secrets import Secret
from demeter_storage.ports import ImageStore
from demeter_storage.service.schemas import UploadRequest
from demeter_storage.testing import ManualClock
from tests.proof.strategies import JPEG, edits, fuzz_settings, memory_service, mutate, outcome
from tests.proof.url_server import BASE, CONTENT, KEYS, Server

WEEK = 7 * 24 * 3600
ODD_VALUES = [None, True, False, 1.0, 24.5, "24", b"1", Decimal(2), float("nan"), float("inf")]


# The service's expiry in hours.


@fuzz_settings()
@given(
    hours=st.one_of(
        st.integers(-2, 200),
        st.integers(),
        st.sampled_from([*ODD_VALUES, timedelta(hours=1), 168, 169, 0, 1]),
        st.floats(),
    )
)
def test_service_expiry_hours_give_that_lifetime_or_a_validation_error(
    loop: asyncio.Runner, hours: object
) -> None:
    service, clock = memory_service()

    async def scenario() -> None:
        image = await service.upload_original(JPEG, "s", UploadRequest("a.jpg", "image/jpeg"))
        valid = hours is None or (type(hours) is int and 1 <= hours <= 168)
        try:
            url = await service.generate_presigned_url(image.s3_key, expiry_hours=hours)  # type: ignore[arg-type]
        except ValidationError:
            assert not valid, f"{hours!r} was refused"
            return
        assert valid, f"{hours!r} was accepted"
        query = parse_qs(urlsplit(url).query)
        lifetime = 24 if hours is None else hours
        assert query["X-Demeter-Expires"] == [str(lifetime * 3600)]
        assert query["X-Demeter-Date"] == [str(int(clock.now().timestamp()))]
        signer = await service.originals.url_signer()  # type: ignore[attr-defined]
        assert signer.verify(url) == image.s3_key

    loop.run(scenario())


# The stores' expiry in seconds (or a timedelta), on every kind of store.

STABLE_WINDOWS = [None, 1, 3600, 302400]


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[ManualClock, dict[str, ImageStore]]]:
    clock = ManualClock()
    found: dict[str, ImageStore] = {
        "memory": InMemoryImageStore("photos", clock=clock.now),
        "local": LocalImageStore(tmp_path / "photos", clock=clock.now, durable=False),
    }
    for window in STABLE_WINDOWS:
        config = S3Config(
            endpoint_url="http://127.0.0.1:9",  # never contacted: presigning is local
            region="us-east-1",
            addressing_style="path",
            access_key_id="AKIDFUZZFUZZFUZZFUZZ",
            secret_access_key=Secret("fuzz-secret-key-fuzz-secret-key-fuzz-0000"),
            presign_stable_seconds=window,
        )
        found[f"s3-{window}"] = S3ImageStore("photos", config=config, clock=clock.now)
    yield clock, found
    for store in found.values():
        asyncio.run(store.aclose())


expiries = st.one_of(
    st.integers(-5, WEEK + 5),
    st.sampled_from([0, 1, 2, 59, 3600, WEEK - 1, WEEK, WEEK + 1, -1, 2**63, -(2**63)]),
    st.builds(timedelta, seconds=st.floats(-2 * WEEK, 2 * WEEK, allow_nan=False)),
    st.sampled_from([timedelta(0), timedelta(days=7), timedelta(days=7, microseconds=1)]),
    st.sampled_from(ODD_VALUES),
)


def _expected_seconds(expires_in: object) -> int | type[Exception]:
    if isinstance(expires_in, timedelta):
        seconds = int(expires_in.total_seconds())
    elif type(expires_in) is int:
        seconds = expires_in
    else:
        return TypeError
    return seconds if 1 <= seconds <= WEEK else ValidationError


@fuzz_settings()
@given(
    which=st.sampled_from(["memory", "local", *(f"s3-{w}" for w in STABLE_WINDOWS)]),
    expires_in=expiries,
    method=st.sampled_from(["GET", "PUT", "GET", "PUT", "get", "POST", "DELETE", None, ""]),
    tick=st.integers(0, 10**6),
)
def test_store_presign_lives_as_long_as_asked_or_raises_a_typed_error(
    loop: asyncio.Runner,
    stores: tuple[ManualClock, dict[str, ImageStore]],
    which: str,
    expires_in: object,
    method: object,
    tick: int,
) -> None:
    clock, found = stores
    clock.advance(tick)
    store, now = found[which], clock.now()
    seconds = _expected_seconds(expires_in)
    errors: set[type[Exception]] = set()
    if not isinstance(seconds, int):
        errors.add(seconds)
    if method not in ("GET", "PUT"):
        errors.add(ValidationError)
    pinned = "image/jpeg" if method == "PUT" else None  # a PUT URL pins its content type
    url = loop.run(
        outcome(store.presign("s/a.jpg", expires_in=expires_in, method=method, content_type=pinned))  # type: ignore[arg-type]
    )
    if isinstance(url, Exception):
        assert type(url) in errors, f"{expires_in!r} {method!r}: {url!r}"
        return
    assert not errors, f"{expires_in!r} {method!r} was accepted"
    assert isinstance(seconds, int)
    assert url.method == method
    assert dict(url.headers) == (
        {"Content-Type": "image/jpeg", "If-None-Match": "*"} if method == "PUT" else {}
    )
    query = {name: values[0] for name, values in parse_qs(urlsplit(url.url).query).items()}
    if which.startswith("s3"):
        signed_at = datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(
            tzinfo=now.tzinfo
        )
        lifetime = int(query["X-Amz-Expires"])
        assert signed_at <= now and lifetime <= WEEK
        assert url.expires_at == signed_at + timedelta(seconds=lifetime)
        assert url.expires_at >= now + timedelta(seconds=seconds), "expires early"
        window = STABLE_WINDOWS[[f"s3-{w}" for w in STABLE_WINDOWS].index(which)]
        assert url.expires_at <= now + timedelta(seconds=seconds + (window or 0))
    else:
        assert url.expires_at == now + timedelta(seconds=seconds)
        assert loop.run(store.verify_url(url.url, method)) == "s/a.jpg"  # type: ignore[attr-defined]


# The signed-URL server (tests/proof/url_server.py) against tampered URLs.


def _signed_values(bucket: str, url: str) -> tuple[str, str, int, int, str]:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    key = unquote(parts.path.split("/", 2)[2])
    return (
        bucket,
        key,
        int(query["X-Demeter-Date"][0]),
        int(query["X-Demeter-Expires"][0]),
        query["X-Demeter-Signature"][0],
    )


def _same_as_signed(
    received: tuple[str, str, dict[str, list[str]]], signed: tuple[Any, ...]
) -> bool:
    bucket, key, query = received
    try:
        (date,), (expires,), (signature,) = (
            query.get(name, [])
            for name in ("X-Demeter-Date", "X-Demeter-Expires", "X-Demeter-Signature")
        )
        return (bucket, key, int(date), int(expires), signature) == signed
    except ValueError:
        return False


async def _tamper(server: Server, draw: st.DataObject) -> None:
    bucket = draw.draw(st.sampled_from(sorted(server.stores)), label="bucket")
    key = draw.draw(st.sampled_from(KEYS), label="key")
    method = draw.draw(st.sampled_from(["GET", "HEAD", "PUT"]), label="method")
    how = draw.draw(
        st.sampled_from(
            [
                *("signature", "date", "expires", "key", "bucket", "query", "url"),
                *("other-key", "other-bucket", "other-secret", "other-method"),
            ]
        ),
        label="tampering",
    )
    signed_method = "PUT" if method == "PUT" else "GET"
    if how == "other-method":
        signed_method = "GET" if signed_method == "PUT" else "PUT"
    signer_store = server.stores[bucket]
    if how == "other-secret":
        signer_store = InMemoryImageStore(
            bucket, base_url=f"{BASE}/{bucket}", clock=server.clock.now
        )
    pinned = "image/jpeg" if signed_method == "PUT" else None
    url = (
        await signer_store.presign(
            key,
            expires_in=3600,
            method=signed_method,  # type: ignore[arg-type]
            content_type=pinned,
        )
    ).url
    signed = _signed_values(bucket, url)
    path, query = url.removeprefix(BASE + "/").split("?", 1)
    target_bucket, quoted_key = path.split("/", 1)
    params = dict(item.split("=", 1) for item in query.split("&"))
    changes = draw.draw(edits, label="edits")
    if how in ("signature", "date", "expires"):
        name = f"X-Demeter-{how.capitalize()}"
        params[name] = mutate(params[name], changes)
    elif how == "key":
        quoted_key = mutate(quoted_key, changes)
    elif how == "bucket":
        target_bucket = mutate(target_bucket, changes)
    elif how == "other-key":
        quoted_key = quote(draw.draw(st.sampled_from([k for k in KEYS if k != key])), safe="/~")
    elif how == "other-bucket":
        target_bucket = next(name for name in server.stores if name != bucket)
    query = "&".join(f"{name}={value}" for name, value in params.items())
    if how == "query":
        query = mutate(query, changes)
    tampered = f"{BASE}/{target_bucket}/{quoted_key}?{query}"
    if how == "url":
        tampered = BASE + mutate(tampered.removeprefix(BASE), changes)
    try:
        response = await server.request(method, tampered)
    except httpx.InvalidURL:
        reject()
    try:
        same = _same_as_signed(server.received(), signed) and signed_method == (
            "PUT" if method == "PUT" else "GET"
        )
    except (UnicodeDecodeError, KeyError):
        same = False
    event(f"{how}: {response.status_code}")
    if response.status_code in (200, 206, 304):
        assert same, f"{how} {tampered!r} was served ({response.status_code})"
        assert method != "PUT", "a PUT URL replaced an object"
        if method == "GET":
            assert response.content == CONTENT[key]
        return
    if response.status_code == 412:
        # A valid PUT URL for a key that holds an object: it only creates.
        assert same, f"{how} {tampered!r} got past the signature check"
        assert method == "PUT"
    else:
        assert response.status_code in (403, 404), f"{tampered!r}: {response.status_code}"
        assert not (tampered == url and how not in ("other-secret", "other-method")), "refused"
    assert CONTENT[key] not in response.content
    for name, store in server.stores.items():
        assert [info.key async for info in store.list()] == sorted(KEYS), name
        for each in KEYS:
            assert await store.get(each) == CONTENT[each]


@fuzz_settings()
@given(draw=st.data())
def test_the_server_refuses_tampered_foreign_and_cross_key_urls(
    loop: asyncio.Runner, server: Server, draw: st.DataObject
) -> None:
    loop.run(_tamper(server, draw))


@fuzz_settings()
@given(
    bucket=st.sampled_from(["photos", "viz"]),
    method=st.sampled_from(["GET", "HEAD"]),
    expires_in=st.one_of(st.integers(1, WEEK), st.sampled_from([1, 60, WEEK])),
    offset=st.one_of(
        st.integers(-3 * WEEK, 3 * WEEK),
        st.integers(-62, 2),
        st.sampled_from([-61, -60, -59, 0]),
    ),
    past_expiry=st.integers(-2, 2),
    at_expiry=st.booleans(),
)
def test_the_server_answers_only_from_60_s_before_the_date_until_expiry(
    loop: asyncio.Runner,
    server: Server,
    bucket: str,
    method: str,
    expires_in: int,
    offset: int,
    past_expiry: int,
    at_expiry: bool,
) -> None:
    """A negative offset is a URL dated in the future (signed by a clock ahead of ours)."""
    if at_expiry:
        offset = expires_in + past_expiry
    store = server.stores[bucket]

    async def scenario() -> None:
        url = (await store.presign("s1/a.jpg", expires_in=expires_in)).url
        server.clock.advance(offset)
        try:
            response = await server.request(method, url)
        finally:
            server.clock.advance(-offset)
        valid = -60 <= offset <= expires_in
        event("served" if valid else ("future-dated" if offset < 0 else "expired"))
        assert response.status_code == (200 if valid else 403), (offset, expires_in)

    loop.run(scenario())
