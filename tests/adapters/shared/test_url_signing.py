"""HMAC-signed URLs of the local and in-memory stores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from demeter_storage import InMemoryImageStore, InvalidSignature, LocalImageStore, Secret
from demeter_storage.adapters.shared.url_signing import UrlSigner
from demeter_storage.domain.errors import ConfigurationError, ValidationError
from demeter_storage.domain.keys import validate_key


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _signer(clock: Clock, scope: str = "bucket") -> UrlSigner:
    return UrlSigner(b"k" * 32, "http://127.0.0.1:8765/bucket/", scope, clock)


def test_a_signed_url_verifies_until_it_expires() -> None:
    clock = Clock()
    signer = _signer(clock)
    url = signer.sign("s1/a b+c.jpg", 60, "GET")
    assert url.url.startswith("http://127.0.0.1:8765/bucket/s1/a%20b%2Bc.jpg?")
    assert url.expires_at == clock.now + timedelta(seconds=60)
    assert signer.verify(url.url) == "s1/a b+c.jpg"
    clock.now += timedelta(seconds=60)
    assert signer.verify(url.url) == "s1/a b+c.jpg"
    clock.now += timedelta(seconds=1)
    with pytest.raises(InvalidSignature, match="expired"):
        signer.verify(url.url)


def _replace_param(url: str, name: str, value: str) -> str:
    base, query = url.split("?")
    params = {k: v[0] for k, v in parse_qs(query).items()}
    params[name] = value
    return base + "?" + "&".join(f"{k}={v}" for k, v in params.items())


def test_tampering_of_any_part_is_refused() -> None:
    clock = Clock()
    signer = _signer(clock)
    url = signer.sign("s1/a.jpg", 3600, "GET").url
    signature = parse_qs(urlsplit(url).query)["X-Demeter-Signature"][0]
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    tampered = [
        url.replace("s1/a.jpg", "s1/b.jpg"),
        _replace_param(url, "X-Demeter-Expires", "604800"),
        _replace_param(url, "X-Demeter-Date", str(int(clock.now.timestamp()) + 1)),
        _replace_param(url, "X-Demeter-Signature", flipped),
        url + "&X-Demeter-Signature=" + signature,
        url.split("&X-Demeter-Signature")[0],
        url.replace("X-Demeter-Date=", "X-Demeter-Date=x"),
        url.replace("127.0.0.1:8765", "127.0.0.1:9999"),
        url.replace("/bucket/", "/other/"),
    ]
    for bad in tampered:
        with pytest.raises(InvalidSignature):
            signer.verify(bad)
    with pytest.raises(InvalidSignature, match="does not match"):
        signer.verify(url, "PUT")
    with pytest.raises(InvalidSignature, match="does not match"):
        _signer(clock, scope="other-bucket").verify(url)
    with pytest.raises(TypeError):
        signer.verify(b"bytes")  # type: ignore[arg-type]


def test_future_dated_urls_are_refused() -> None:
    clock = Clock()
    signer = _signer(clock)
    clock.now += timedelta(minutes=10)
    url = signer.sign("s1/a.jpg", 60, "GET").url
    clock.now -= timedelta(minutes=10)
    with pytest.raises(InvalidSignature, match="future"):
        signer.verify(url)


@given(
    key=st.text(
        alphabet=st.characters(blacklist_categories=["Cc", "Cf", "Cs", "Zl", "Zp"]),
        min_size=1,
        max_size=30,
    ).filter(lambda s: "/" not in s and "\\" not in s)
)
def test_every_valid_key_survives_the_round_trip(key: str) -> None:
    try:
        valid = validate_key(f"s/{key}")
    except ValidationError:
        return
    signer = _signer(Clock())
    assert signer.verify(signer.sign(valid, 60, "PUT", "image/jpeg").url, "PUT") == valid


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="16 bytes"):
        UrlSigner(b"short", "http://h/b", "b", Clock())
    for base in ("ftp://h/b", "http:///b", "http://h/b?x=1", "relative/path"):
        with pytest.raises(ConfigurationError, match="base URL"):
            UrlSigner(b"k" * 32, base, "b", Clock())


async def test_memory_stores_only_verify_their_own_urls() -> None:
    one, two = InMemoryImageStore(), InMemoryImageStore()
    url = await one.presign("s/a.jpg", expires_in=60)
    assert await one.verify_url(url.url) == "s/a.jpg"
    with pytest.raises(InvalidSignature):
        await two.verify_url(url.url)


async def test_local_store_keeps_one_secret_per_root(tmp_path: Path) -> None:
    first = LocalImageStore(tmp_path / "b")
    url = await first.presign("s/a.jpg", expires_in=60, method="PUT", content_type="image/jpeg")
    key_file = tmp_path / "b" / ".demeter" / "signing-key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    second = LocalImageStore(tmp_path / "b")
    assert await second.verify_url(url.url, "PUT") == "s/a.jpg"
    assert [info async for info in second.list()] == []
    assert "signing" not in repr(second) and key_file.read_text() not in repr(second)


async def test_local_store_uses_a_configured_secret(tmp_path: Path) -> None:
    for secret in (Secret("s" * 32), "s" * 32, b"s" * 32):
        store = LocalImageStore(
            tmp_path / "b", signing_secret=secret, base_url="https://cdn.example/p"
        )
        url = await store.presign("s/a.jpg", expires_in=60)
        assert url.url.startswith("https://cdn.example/p/s/a.jpg?")
        assert await LocalImageStore(
            tmp_path / "b", signing_secret="s" * 32, base_url="https://cdn.example/p"
        ).verify_url(url.url)
    assert not (tmp_path / "b" / ".demeter").exists()
    with pytest.raises(TypeError):
        LocalImageStore(tmp_path, signing_secret=42)  # type: ignore[arg-type]
    signer = await store.url_signer()
    assert signer.base_url == "https://cdn.example/p"
    assert "k" * 32 not in repr(signer)


def test_put_urls_pin_their_content_type() -> None:
    signer = _signer(Clock())
    url = signer.sign("s/a.jpg", 60, "PUT", "image/jpeg")
    path, _, query = url.url.partition("?")
    quoted_key = path.rsplit("/", 2)[-2] + "/" + path.rsplit("/", 1)[-1]
    grant = signer.verify_grant(quoted_key, query, "PUT")
    assert (grant.key, grant.content_type) == ("s/a.jpg", "image/jpeg")
    assert dict(url.headers) == {"Content-Type": "image/jpeg", "If-None-Match": "*"}
    bent = url.url.replace("image%2Fjpeg", "image%2Fpng")
    assert bent != url.url
    with pytest.raises(InvalidSignature, match="does not match"):
        signer.verify(bent, "PUT")
    with pytest.raises(ValueError, match="content type"):
        signer.sign("s/a.jpg", 60, "PUT")
    with pytest.raises(ValueError, match="content type"):
        signer.sign("s/a.jpg", 60, "GET", "image/jpeg")


def test_absurdly_long_times_are_malformed_not_errors() -> None:
    signer = _signer(Clock())
    url = signer.sign("s/a.jpg", 60, "GET").url
    long_date = url.replace("X-Demeter-Date=", "X-Demeter-Date=" + "9" * 5000)
    with pytest.raises(InvalidSignature, match="malformed"):
        signer.verify(long_date)
