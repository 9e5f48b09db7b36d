"""The fast presigner signs byte for byte what botocore signs."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from unittest import mock

import boto3
import pytest
from botocore.config import Config
from hypothesis import given, settings
from hypothesis import strategies as st

from demeter_storage.adapters.s3 import sigv4
from demeter_storage.adapters.s3.config import S3Config
from demeter_storage.adapters.s3.sigv4 import QuerySigner, url_shape
from demeter_storage.adapters.s3.store import S3ImageStore
from demeter_storage.domain.errors import ConfigurationError
from demeter_storage.domain.objects import put_url_headers, validate_content_type
from demeter_storage.testing import ManualClock

ENDPOINTS = [
    (None, "auto", "us-east-1"),
    (None, "auto", "eu-west-3"),
    (None, "virtual", "ap-southeast-2"),
    (None, "path", "eu-central-1"),
    ("http://127.0.0.1:8333", "path", "us-east-1"),
    ("https://minio.example.test:9000", "path", "eu-west-1"),
    ("https://r2.example.test", "virtual", "auto"),
    ("https://s3.example.test:443", "path", "us-west-2"),
    ("http://s3.example.test:80", "path", "us-west-2"),
]
BUCKETS = ["demeter-photos-original", "my.dotted.bucket", "abc"]
# Every character a key may hold, the awkward ones often.
KEY_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("/ +~%?#&=;:@$,!'()*[]{}<>|^`\"\\.-_")),
        st.characters(codec="utf-8", exclude_categories=["Cs"]),
    ),
    min_size=1,
    max_size=60,
)


# Content types as validate_content_type lets them through: parameters, quoted
# values, and the spaces SigV4 trims and collapses in a signed header's value.
TOKEN = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$&^_.+-",
    min_size=1,
    max_size=12,
)
CONTENT_TYPES = st.one_of(
    st.sampled_from(["image/jpeg", "image/png", "image/heic", "application/octet-stream"]),
    st.builds(
        lambda kind, sub, params: f"{kind}/{sub}" + "".join(params),
        TOKEN,
        TOKEN,
        st.lists(
            st.builds(
                lambda space, name, value: f"{space};{space}{name}={value}",
                st.sampled_from(["", " ", "  ", "\t"]),
                TOKEN,
                st.one_of(
                    TOKEN, st.builds(lambda v: f'"{v}"', st.text(alphabet=" abc;=,/", max_size=8))
                ),
            ),
            max_size=2,
        ),
    ),
).map(validate_content_type)


def botocore_client(
    endpoint: str | None,
    style: str,
    region: str,
    token: str | None,
    signature_version: str | None = "s3v4",
) -> object:
    options = {} if signature_version is None else {"signature_version": signature_version}
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        aws_session_token=token,
        config=Config(s3={"addressing_style": style}, **options),
    )


@pytest.fixture(scope="module")
def clients() -> Iterator[dict[tuple[int, str, str | None], object]]:
    made = {
        (index, bucket, token): botocore_client(*endpoint, token)
        for index, endpoint in enumerate(ENDPOINTS)
        for bucket in BUCKETS
        for token in (None, "FQoGZXIvYXdzE//token+with/odd=chars", "")
    }
    yield made
    for client in made.values():
        client.close()  # type: ignore[attr-defined]


def botocore_url(
    client: object,
    bucket: str,
    method: str,
    key: str,
    at: datetime,
    expires: int,
    content_type: str | None = None,
) -> str:
    """botocore's URL; a PUT with a content type also pins it and If-None-Match: *."""
    operation = "get_object" if method == "GET" else "put_object"
    params = {"Bucket": bucket, "Key": key}
    if content_type is not None:
        params |= {"ContentType": content_type, "IfNoneMatch": "*"}
    with mock.patch("botocore.auth.get_current_datetime", return_value=at.replace(tzinfo=None)):
        return client.generate_presigned_url(  # type: ignore[attr-defined, no-any-return]
            operation, Params=params, ExpiresIn=expires
        )


def fast_signer(client: object, bucket: str) -> QuerySigner:
    credentials = client._request_signer._credentials  # type: ignore[attr-defined]

    def presign(method: str, key: str) -> str:
        return client.generate_presigned_url(  # type: ignore[attr-defined, no-any-return]
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=60
        )

    return QuerySigner(url_shape(presign), credentials.get_frozen_credentials)


@settings(max_examples=400, deadline=None)
@given(
    endpoint=st.integers(0, len(ENDPOINTS) - 1),
    bucket=st.sampled_from(BUCKETS),
    token=st.sampled_from([None, "FQoGZXIvYXdzE//token+with/odd=chars", ""]),
    key=KEY_TEXT,
    method=st.sampled_from(["GET", "PUT"]),
    at=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)
    ),
    expires=st.integers(1, 604800),
)
def test_urls_are_byte_identical_to_botocores(
    clients: dict[tuple[int, str, str | None], object],
    endpoint: int,
    bucket: str,
    token: str | None,
    key: str,
    method: str,
    at: datetime,
    expires: int,
) -> None:
    client = clients[(endpoint, bucket, token)]
    at = at.replace(microsecond=0)
    expected = botocore_url(client, bucket, method, key, at, expires)
    assert fast_signer(client, bucket).sign(method, key, at, expires) == expected


@settings(max_examples=400, deadline=None)
@given(
    endpoint=st.integers(0, len(ENDPOINTS) - 1),
    bucket=st.sampled_from(BUCKETS),
    token=st.sampled_from([None, "FQoGZXIvYXdzE//token+with/odd=chars", ""]),
    key=KEY_TEXT,
    content_type=CONTENT_TYPES,
    at=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)
    ),
    expires=st.integers(1, 604800),
)
def test_put_urls_with_signed_headers_are_byte_identical_to_botocores(
    clients: dict[tuple[int, str, str | None], object],
    endpoint: int,
    bucket: str,
    token: str | None,
    key: str,
    content_type: str,
    at: datetime,
    expires: int,
) -> None:
    client = clients[(endpoint, bucket, token)]
    at = at.replace(microsecond=0)
    expected = botocore_url(client, bucket, "PUT", key, at, expires, content_type)
    assert "X-Amz-SignedHeaders=content-type%3Bhost%3Bif-none-match&" in expected
    signed = fast_signer(client, bucket).sign_with_headers(
        "PUT", key, at, expires, put_url_headers(content_type)
    )
    assert signed == expected


def test_signed_header_names_are_checked() -> None:
    signer = fast_signer(botocore_client(None, "auto", "eu-west-3", None), "abc")
    at = datetime(2026, 3, 1, 8, tzinfo=UTC)
    for name in ("Host", "bad name", "x:y", ""):
        with pytest.raises(ValueError, match="cannot sign the header"):
            signer.sign_with_headers("PUT", "s/a.jpg", at, 60, {name: "v"})


def test_the_signing_key_is_derived_once_a_day() -> None:
    client = botocore_client(None, "auto", "eu-west-3", None)
    signer = fast_signer(client, "abc")
    day = datetime(2026, 3, 1, 8, tzinfo=UTC)
    with mock.patch.object(sigv4.hmac, "new", wraps=hmac.new) as keyed:
        for minute in range(10):
            signer.sign("GET", f"s/{minute}.jpg", day + timedelta(minutes=minute), 60)
        # Four HMACs in the derivation, the fifth keyed by the signing key, then none a URL.
        assert keyed.call_count == 5
        signer.sign("GET", "s/next-day.jpg", day + timedelta(days=1), 60)
        assert keyed.call_count == 5 + 5


def test_the_shape_must_come_from_a_presigned_url() -> None:
    with pytest.raises(ValueError, match="unexpected presigned URL shape"):
        url_shape(lambda method, key: "https://example.test/elsewhere?X-Amz-Credential=a")


async def test_the_store_signs_like_botocore_and_follows_its_clock() -> None:
    client = botocore_client("http://127.0.0.1:8333", "path", "us-east-1", "tok")
    clock = ManualClock(datetime(2026, 3, 1, 8, 30, 15, tzinfo=UTC))
    store = S3ImageStore("photos", client=client, clock=clock.now)  # type: ignore[arg-type]
    signed = await store.presign("s1/a b.jpg", expires_in=900)
    assert signed.url == botocore_url(client, "photos", "GET", "s1/a b.jpg", clock.now(), 900)
    assert signed.expires_at == clock.now() + timedelta(seconds=900)
    put = await store.presign("s1/a b.jpg", expires_in=900, method="PUT", content_type="image/jpeg")
    assert put.url == botocore_url(
        client, "photos", "PUT", "s1/a b.jpg", clock.now(), 900, "image/jpeg"
    )
    assert put.expires_at == clock.now() + timedelta(seconds=900)
    await store.aclose()


# (endpoint, addressing style, region) of clients that presign with SigV2 by default
SIGV2_BY_DEFAULT = [
    (None, "auto", "us-east-1"),
    (None, "path", "us-east-1"),
    ("http://127.0.0.1:8333", "path", "us-east-1"),
    ("https://minio.example.test:9000", "virtual", "us-east-1"),
]


@pytest.mark.parametrize("signature_version", [None, "s3"])
@pytest.mark.parametrize(("endpoint", "style", "region"), SIGV2_BY_DEFAULT)
@pytest.mark.parametrize("token", [None, "FQoGZXIvYXdzE//token+with/odd=chars"])
async def test_urls_are_sigv4_whatever_the_client_signs_with(
    endpoint: str | None, style: str, region: str, token: str | None, signature_version: str | None
) -> None:
    client = botocore_client(endpoint, style, region, token, signature_version)
    sigv4_client = botocore_client(endpoint, style, region, token)
    clock = ManualClock(datetime(2026, 3, 1, 8, 30, 15, tzinfo=UTC))
    store = S3ImageStore("photos", client=client, clock=clock.now)  # type: ignore[arg-type]
    try:
        key = "s1/a b+é.jpg"
        sigv2 = botocore_url(client, "photos", "GET", key, clock.now(), 900)
        assert "X-Amz-Signature" not in sigv2  # the client presigns with SigV2...
        # ...the store's URLs are SigV4 all the same, exactly as botocore's SigV4 signer has them.
        get = await store.presign(key, expires_in=900)
        assert get.url == botocore_url(sigv4_client, "photos", "GET", key, clock.now(), 900)
        put = await store.presign(key, expires_in=900, method="PUT", content_type="image/jpeg")
        assert put.url == botocore_url(
            sigv4_client, "photos", "PUT", key, clock.now(), 900, "image/jpeg"
        )
        assert "X-Amz-SignedHeaders=content-type%3Bhost%3Bif-none-match&" in put.url
        assert dict(put.headers) == {"Content-Type": "image/jpeg", "If-None-Match": "*"}
        # botocore, asked directly, still presigns as the client was built to.
        assert botocore_url(client, "photos", "GET", key, clock.now(), 900) == sigv2
    finally:
        await store.aclose()


async def test_a_default_client_s_store_never_asks_botocore_after_construction() -> None:
    client = botocore_client(None, "auto", "us-east-1", None, None)
    store = S3ImageStore("photos", client=client)  # type: ignore[arg-type]
    try:
        with mock.patch.object(client, "generate_presigned_url") as botocore_presigns:
            for index in range(50):
                url = await store.presign(f"s1/{index}.jpg", expires_in=60)
                assert "X-Amz-Algorithm=AWS4-HMAC-SHA256&" in url.url
                await store.presign(
                    f"s1/{index}.jpg", expires_in=60, method="PUT", content_type="image/jpeg"
                )
        assert botocore_presigns.call_count == 0
    finally:
        await store.aclose()


async def test_botocore_signs_with_sigv4_when_the_client_shows_no_shape() -> None:
    client = botocore_client(None, "path", "us-east-1", None, None)
    sigv4_client = botocore_client(None, "path", "us-east-1", None)
    at = datetime(2026, 3, 1, 8, 30, 15, tzinfo=UTC)
    # A client whose URLs show no usable shape, decided once, with the store.
    with mock.patch("demeter_storage.adapters.s3.presign.url_shape", side_effect=ValueError):
        store = S3ImageStore("photos", client=client, clock=lambda: at)  # type: ignore[arg-type]
    try:
        with mock.patch("botocore.auth.get_current_datetime", return_value=at.replace(tzinfo=None)):
            get = await store.presign("s1/a.jpg", expires_in=60)
            put = await store.presign(
                "s1/a.jpg", expires_in=60, method="PUT", content_type="image/png"
            )
        assert get.url == botocore_url(sigv4_client, "photos", "GET", "s1/a.jpg", at, 60)
        assert put.url == botocore_url(
            sigv4_client, "photos", "PUT", "s1/a.jpg", at, 60, "image/png"
        )
    finally:
        await store.aclose()


async def test_stable_urls_repeat_inside_a_window_and_never_expire_early() -> None:
    client = botocore_client("http://127.0.0.1:8333", "path", "us-east-1", None)
    clock = ManualClock(datetime(2026, 3, 1, 8, 0, 5, tzinfo=UTC))
    config = S3Config(presign_stable_seconds=3600)
    store = S3ImageStore("photos", client=client, config=config, clock=clock.now)  # type: ignore[arg-type]
    first = await store.presign("s1/a.jpg", expires_in=600)
    clock.advance(3000)
    again = await store.presign("s1/a.jpg", expires_in=600)
    assert again == first
    assert first.expires_at == datetime(2026, 3, 1, 9, 10, tzinfo=UTC)
    assert first.expires_at >= clock.now() + timedelta(seconds=600)
    assert "X-Amz-Date=20260301T080000Z" in first.url
    clock.advance(600)  # the next window
    assert (await store.presign("s1/a.jpg", expires_in=600)).url != first.url
    # Near the 7-day limit a window longer is impossible: signed at now instead.
    longest = await store.presign("s1/a.jpg", expires_in=604800)
    assert longest.expires_at == clock.now() + timedelta(days=7)
    await store.aclose()


@pytest.mark.parametrize("seconds", [0, -5, 400000])
def test_the_stable_window_is_checked(seconds: int) -> None:
    with pytest.raises(ConfigurationError, match="presign_stable_seconds"):
        S3Config(presign_stable_seconds=seconds)


async def test_without_credentials_botocore_explains() -> None:
    client = boto3.client("s3", region_name="us-east-1", endpoint_url="http://127.0.0.1:1")
    with mock.patch.object(client._request_signer, "_credentials", None):
        store = S3ImageStore("photos", client=client)
        with pytest.raises(ConfigurationError):
            await store.presign("s1/a.jpg", expires_in=60)
        with pytest.raises(ConfigurationError):
            await store.presign("s1/a.jpg", expires_in=60, method="PUT", content_type="image/png")
        await store.aclose()
