"""Over HTTP, a PUT is signed with the SHA-256 the store computed, not hashed again by botocore."""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from collections.abc import AsyncIterator

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from demeter_storage.adapters.s3 import payload_signing as s3_payload_signing
from demeter_storage.adapters.s3.payload_signing import KnownPayloadSigV4Auth, known_payload
from demeter_storage.adapters.s3.store import S3ImageStore
from demeter_storage.testing import SeaweedFSServer

BODY = os.urandom(70_000)
DIGEST = hashlib.sha256(BODY).hexdigest()


def _signer() -> KnownPayloadSigV4Auth:
    return KnownPayloadSigV4Auth(Credentials("AKID", "SECRET"), "s3", "us-east-1")


def _request(url: str, body: io.BytesIO) -> AWSRequest:
    return AWSRequest(method="PUT", url=url, data=body)


def test_the_known_hash_signs_that_very_body_over_http() -> None:
    body = io.BytesIO(BODY)
    with known_payload(body, "f" * 64):
        assert _signer().payload(_request("http://127.0.0.1/b/k", body)) == "f" * 64  # as given


def test_another_body_a_moved_one_https_or_no_known_hash_are_hashed_by_botocore() -> None:
    body = io.BytesIO(BODY)
    with known_payload(body, "f" * 64):
        assert _signer().payload(_request("http://h/b/k", io.BytesIO(BODY))) == DIGEST
        https = _signer().payload(_request("https://h/b/k", body))
        assert https == DIGEST  # no checksum header here: botocore signs the body itself
        body.seek(1)
        moved = _signer().payload(_request("http://h/b/k", body))
        assert moved == hashlib.sha256(BODY[1:]).hexdigest()
    body.seek(0)
    assert _signer().payload(_request("http://h/b/k", body)) == DIGEST


def test_the_known_hash_lasts_for_its_block_only_even_when_it_raises() -> None:
    body = io.BytesIO(BODY)
    with pytest.raises(RuntimeError), known_payload(body, "f" * 64):
        raise RuntimeError("the put failed")
    assert s3_payload_signing._known.payload is None
    assert _signer().payload(_request("http://h/b/k", body)) == DIGEST


@pytest.fixture
async def store(seaweedfs_server: SeaweedFSServer) -> AsyncIterator[S3ImageStore]:
    store = S3ImageStore(f"sign-{uuid.uuid4().hex[:10]}", config=seaweedfs_server.s3_config())
    await store.ensure_bucket()
    yield store
    await store.aclose()


@pytest.mark.seaweedfs
async def test_seaweedfs_accepts_the_store_s_put_signed_with_the_store_s_own_hash(
    store: S3ImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    botocore_hashed: list[object] = []
    hash_the_body = botocore.auth.S3SigV4Auth.payload

    def counted(auth: botocore.auth.S3SigV4Auth, request: AWSRequest) -> str:
        if request.body is not None:  # a GET has nothing to hash
            botocore_hashed.append(request.body)
        return str(hash_the_body(auth, request))

    monkeypatch.setattr(botocore.auth.S3SigV4Auth, "payload", counted)
    signed: list[str] = []
    store.client.meta.events.register(
        "before-send.s3.PutObject",
        lambda request, **_: signed.append(request.headers["X-Amz-Content-SHA256"].decode()),
    )
    info = await store.put("s1/photo.bin", BODY, content_type="application/octet-stream")
    assert botocore_hashed == []
    assert signed == [DIGEST] == [info.sha256]
    assert await store.get("s1/photo.bin") == BODY  # the server took the signature
    # The same client's own PutObject, with no known hash, is hashed as before.
    store.client.put_object(Bucket=store.name, Key="s1/plain.bin", Body=BODY)
    assert len(botocore_hashed) == 1
    assert signed == [DIGEST, DIGEST]


@pytest.mark.seaweedfs
async def test_the_store_sends_a_small_body_at_once_and_asks_to_send_a_larger_one(
    store: S3ImageStore,
) -> None:
    asked: list[str | None] = []

    def record(request: AWSRequest, **_: object) -> None:
        expect = request.headers.get("Expect")
        asked.append(expect.decode() if isinstance(expect, bytes) else expect)

    store.client.meta.events.register("before-send.s3.PutObject", record)
    limit = s3_payload_signing.SEND_AT_ONCE_MAX_BYTES
    bodies = {"small": BODY, "at-limit": os.urandom(limit), "over-limit": os.urandom(limit + 1)}
    for name, body in bodies.items():
        await store.put(f"s1/{name}.bin", body, content_type="application/octet-stream")
    # The same client's own PutObject, with no known body, asks as botocore always does.
    store.client.put_object(Bucket=store.name, Key="s1/plain.bin", Body=BODY)
    assert asked == [None, None, "100-continue", "100-continue"]
    # The server took every one, whole.
    for name, body in {**bodies, "plain": BODY}.items():
        assert await store.get(f"s1/{name}.bin") == body
