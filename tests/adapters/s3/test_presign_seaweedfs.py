"""A store built from boto3's default client presigns SigV4 URLs that SeaweedFS accepts."""

from __future__ import annotations

import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator

import pytest

from demeter_storage.adapters.s3.store import S3ImageStore
from demeter_storage.testing import SeaweedFSServer

pytestmark = pytest.mark.seaweedfs


def _http(
    url: str, method: str = "GET", data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture
async def default_client_store(seaweedfs_server: SeaweedFSServer) -> AsyncIterator[S3ImageStore]:
    # Built without a signature_version: botocore itself would presign with SigV2.
    client = seaweedfs_server.client()
    store = S3ImageStore(f"presign-{uuid.uuid4().hex[:12]}", client=client)
    await store.ensure_bucket()
    yield store
    await store.aclose()
    client.close()


async def test_get_urls_of_a_default_client_are_sigv4_and_accepted(
    default_client_store: S3ImageStore,
) -> None:
    store = default_client_store
    await store.put("s/a b+c.jpg", b"jpeg bytes", content_type="image/jpeg")
    url = (await store.presign("s/a b+c.jpg", expires_in=60)).url
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256&" in url
    assert _http(url) == (200, b"jpeg bytes")
    # The server checks the signature: one changed character, and it refuses.
    signature = url.rpartition("=")[2]
    tampered = url[: -len(signature)] + ("0" if signature[0] != "0" else "1") + signature[1:]
    status, body = _http(tampered)
    assert (status, b"SignatureDoesNotMatch" in body) == (403, True)
    assert _http(url.replace("a%20b", "a%20c"))[0] == 403  # another key, same signature


async def test_put_urls_of_a_default_client_are_sigv4_and_accepted(
    default_client_store: S3ImageStore,
) -> None:
    store = default_client_store
    put = await store.presign("s/new.jpg", expires_in=60, method="PUT", content_type="image/jpeg")
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256&" in put.url
    status, body = _http(put.url, "PUT", b"from a phone", {"Content-Type": "image/png"})
    assert (status, b"SignatureDoesNotMatch" in body) == (403, True)
    assert _http(put.url, "PUT", b"from a phone", dict(put.headers))[0] == 200
    assert await store.get("s/new.jpg") == b"from a phone"
