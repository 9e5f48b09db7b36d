"""A confirmed image's bytes never change, whatever a client does with a form or URL we issued.

Forms post to the upload's landing place, never to the image's key; presigned
PUT URLs only create. On the memory and local stacks the forms and URLs are
served by the package's ASGI app, on the S3 stack by SeaweedFS itself.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import httpx

from demeter_storage.adapters.resilience.store import ResilientImageStore
from demeter_storage.service.schemas import UploadRequest
from demeter_storage.web.app import SignedUrlApp
from tests.service.conftest import Stack, jpeg
from tests.service.forms import post_form


async def test_replaying_a_form_after_completion_changes_nothing(stack: Stack) -> None:
    photo = jpeg()
    upload = await stack.service.begin_direct_upload("s1", "a.jpg", "image/jpeg", len(photo))
    assert (await post_form(stack, upload, photo)).status_code == 204
    image = await stack.service.complete_direct_upload(upload.image_id)
    intruder = jpeg(color=(255, 0, 255))[: len(photo)]
    intruder = intruder + b"\0" * (len(photo) - len(intruder))
    for body in (intruder, photo[:10] + intruder[10:]):
        replay = await post_form(stack, upload, body)
        # The server may take the post (it lands beside the image, not on it).
        assert replay.status_code in (204, 403), replay.text
    assert await stack.service.download_original("s1/a.jpg") == photo
    assert (await stack.service.get_image(image.image_id)).sha256 == image.sha256
    report = await stack.service.audit()
    assert report.damaged_objects == ()
    assert report.missing_objects == ()
    # What the replays left is a stray copy, not the image: the orphan sweep takes it.
    assert {key for _, key in report.orphan_objects} <= {f"_staging/{upload.image_id}"}
    now = max(stack.clock.now(), datetime.now(UTC))
    stack.clock.advance((now - stack.clock.now()).total_seconds() + 25 * 3600)
    await stack.service.sweep_orphans()
    assert (await stack.service.audit()).consistent
    assert await stack.service.download_original("s1/a.jpg") == photo


async def test_posting_twice_before_completion_keeps_the_last_and_then_nothing(
    stack: Stack,
) -> None:
    first, second = jpeg(color=(1, 100, 1)), jpeg(color=(200, 100, 1))
    size = max(len(first), len(second))
    first, second = (p + b"\0" * (size - len(p)) for p in (first, second))
    upload = await stack.service.begin_direct_upload("s1", "a.jpg", "image/jpeg", size)
    assert (await post_form(stack, upload, first)).status_code == 204
    assert (await post_form(stack, upload, second)).status_code == 204
    image = await stack.service.complete_direct_upload(upload.image_id)
    assert image.sha256 == hashlib.sha256(second).hexdigest()
    await post_form(stack, upload, first)
    assert await stack.service.download_original("s1/a.jpg") == second


async def test_a_presigned_put_never_replaces_a_ready_image(stack: Stack) -> None:
    photo = jpeg()
    image = await stack.service.upload_original(photo, "s1", UploadRequest("a.jpg", "image/jpeg"))
    # S3 checks the URL's signing time against its own clock: sign at real time.
    stack.clock.advance(max((datetime.now(UTC) - stack.clock.now()).total_seconds(), 0))
    url = await stack.originals.presign(
        image.s3_key, expires_in=300, method="PUT", content_type="image/jpeg"
    )
    store = stack.originals
    body = jpeg(color=(9, 9, 9))
    if isinstance(store, ResilientImageStore):  # S3: SeaweedFS itself checks the condition
        async with httpx.AsyncClient(timeout=30) as client:
            answer = await client.put(url.url, content=body, headers=dict(url.headers))
    else:
        transport = httpx.ASGITransport(app=SignedUrlApp({store.name: store}))
        path = url.url.split(store.name, 1)[1]
        async with httpx.AsyncClient(transport=transport, timeout=30) as client:
            answer = await client.put(
                f"http://testserver/{store.name}{path}", content=body, headers=dict(url.headers)
            )
    assert answer.status_code == 412, answer.text
    assert await stack.service.download_original("s1/a.jpg") == photo
    assert (await stack.service.audit()).consistent
