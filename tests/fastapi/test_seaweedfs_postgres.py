"""The router on the real stack: SeaweedFS (S3) and PostgreSQL, through httpx.

The happy path of every route, and each error mapping as the real adapters
raise it: 422 with nothing stored, 404, 409 with the existing id, 403, 413,
503 with ``Retry-After`` once the breaker opens on an unreachable S3, and a
damaged object whose download is cut short. Skips (with the reason) when
SeaweedFS or PostgreSQL is absent.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from demeter_storage import (
    IntegrityError,
    ResilientImageStore,
    S3ImageStore,
    SqlAlchemyMetadataRepository,
)
from demeter_storage.fastapi import downloads
from demeter_storage.service.image_service import ImageService
from demeter_storage.testing import no_sleep
from tests.fastapi.live import free_port
from tests.fastapi.support import PHOTO, PREFIX, PROBLEM, client_for, httpx, make_app, snapshot

pytestmark = [pytest.mark.seaweedfs, pytest.mark.postgres]


@pytest.fixture
async def s3_service(seaweedfs_server: Any, postgres_engine: Any) -> AsyncIterator[ImageService]:
    suffix = uuid.uuid4().hex[:10]
    stores = [
        S3ImageStore(f"{prefix}-{suffix}", config=seaweedfs_server.s3_config())
        for prefix in ("orig", "viz")
    ]
    for store in stores:
        await store.ensure_bucket()
    service = ImageService(
        originals=ResilientImageStore(stores[0], sleep=no_sleep, circuit_name=f"o-{suffix}"),
        visualizations=ResilientImageStore(stores[1], sleep=no_sleep, circuit_name=f"v-{suffix}"),
        metadata=SqlAlchemyMetadataRepository(postgres_engine),
    )
    yield service
    await service.aclose()


@pytest.fixture
async def client(s3_service: ImageService) -> AsyncIterator[Any]:
    async for http in client_for(make_app(s3_service)):
        yield http


async def _upload(client: Any, name: str = "leaf.jpg", **data: str) -> Any:
    return await client.post(
        f"{PREFIX}/sessions/field-7/originals",
        data=data,
        files={"file": (name, PHOTO, "image/jpeg")},
    )


async def test_every_route_works_on_seaweedfs_and_postgres(
    client: Any, s3_service: ImageService
) -> None:
    created = await _upload(client, metadata='{"row": "3"}')
    assert created.status_code == 201, created.text
    image = created.json()
    assert image["bucket"] == s3_service.originals.name
    drawn = await client.post(
        f"{PREFIX}/sessions/field-7/visualizations",
        data={"parent_id": image["image_id"]},
        files={"file": ("boxes.jpg", PHOTO, "image/jpeg")},
    )
    assert drawn.status_code == 201, drawn.text

    got = await client.get(f"{PREFIX}/images/{image['image_id']}")
    assert got.json()["visualization_keys"] == ["field-7/viz_boxes.jpg"]
    page = (await client.get(f"{PREFIX}/sessions/field-7/images", params={"limit": 1})).json()
    rest = await client.get(
        f"{PREFIX}/sessions/field-7/images", params={"cursor": page["next_cursor"]}
    )
    assert len(page["items"]) + len(rest.json()["items"]) == 2

    content = f"{PREFIX}/images/{image['image_id']}/content"
    whole = await client.get(content)
    assert (whole.status_code, whole.content) == (200, PHOTO)
    part = await client.get(content, headers={"Range": "bytes=100-199"})
    assert (part.status_code, part.content) == (206, PHOTO[100:200])
    cached = await client.get(content, headers={"If-None-Match": whole.headers["etag"]})
    assert cached.status_code == 304

    signed = await client.post(
        f"{PREFIX}/presigned-urls", json={"s3_key": image["s3_key"], "expiry_hours": 1}
    )
    assert signed.status_code == 200, signed.text
    async with httpx.AsyncClient() as outside:  # SeaweedFS on 127.0.0.1 serves it itself
        fetched = await outside.get(signed.json()["url"])
    assert (fetched.status_code, fetched.content) == (200, PHOTO)

    begun = await client.post(
        f"{PREFIX}/sessions/field-7/direct-uploads",
        json={"filename": "direct.jpg", "content_type": "image/jpeg", "size": len(PHOTO)},
    )
    assert begun.status_code == 201, begun.text
    form = begun.json()
    async with httpx.AsyncClient() as phone:
        posted = await phone.post(
            form["url"], data=form["fields"], files={"file": ("direct.jpg", PHOTO, "image/jpeg")}
        )
    assert posted.status_code < 300, posted.text
    done = await client.post(f"{PREFIX}/direct-uploads/{form['image_id']}/complete")
    assert done.status_code == 200, done.text

    for image_id in (image["image_id"], form["image_id"]):
        assert (await client.delete(f"{PREFIX}/images/{image_id}")).status_code == 204
    assert await snapshot(s3_service) == ([], [])


async def test_each_error_maps_to_its_status_on_the_real_stack(
    client: Any, s3_service: ImageService
) -> None:
    refused = await client.post(
        f"{PREFIX}/sessions/field-7/originals",
        files={"file": ("a.jpg", b"not a photo", "image/jpeg")},
    )
    assert (refused.status_code, refused.headers["content-type"]) == (422, PROBLEM)
    assert await snapshot(s3_service) == ([], [])

    missing = await client.get(f"{PREFIX}/images/{uuid.uuid4()}")
    assert missing.status_code == 404

    first = (await _upload(client)).json()
    taken = await _upload(client)
    assert taken.status_code == 409
    assert taken.json()["existing_image_id"] == first["image_id"]

    huge = await client.post(
        f"{PREFIX}/sessions/field-7/originals",
        content=b"",
        headers={"content-type": "multipart/form-data; boundary=B", "content-length": "9" * 12},
    )
    assert huge.status_code == 413

    deny = make_app(s3_service, authorize=lambda user, action, session: False)
    async for stranger in client_for(deny):
        denied = await stranger.delete(f"{PREFIX}/images/{first['image_id']}")
    assert denied.status_code == 403
    assert (await client.get(f"{PREFIX}/images/{first['image_id']}")).status_code == 200


async def test_a_damaged_object_is_never_served_whole(
    client: Any, s3_service: ImageService
) -> None:
    image = (await _upload(client)).json()
    damaged = bytearray(PHOTO)
    damaged[-10] ^= 0xFF
    await s3_service.originals.put(image["s3_key"], bytes(damaged), content_type="image/jpeg")
    answer = await client.get(f"{PREFIX}/images/{image['image_id']}/content")
    assert (answer.status_code, answer.headers["content-type"]) == (502, PROBLEM)
    assert "SHA-256" in answer.json()["detail"]
    chunks = downloads.whole(s3_service, await s3_service.get_image(image["image_id"]), 1000)
    received: list[bytes] = []

    async def read_all() -> None:
        async for chunk in chunks:
            received.append(chunk)

    with pytest.raises(IntegrityError):  # longer objects: the last chunk never leaves
        await read_all()
    assert b"".join(received) == bytes(damaged)[: len(received) * 1000] != bytes(damaged)


async def test_an_unreachable_s3_is_503_with_retry_after_once_the_breaker_opens(
    seaweedfs_server: Any, postgres_engine: Any
) -> None:
    dead = seaweedfs_server.s3_config(endpoint_url=f"http://127.0.0.1:{free_port()}")
    suffix = uuid.uuid4().hex[:10]
    stores = [
        ResilientImageStore(
            S3ImageStore(f"{prefix}-{suffix}", config=dead),
            sleep=no_sleep,
            retry_attempts=1,
            failure_threshold=1,
            reset_timeout=30,
            circuit_name=f"dead-{prefix}-{suffix}",
        )
        for prefix in ("orig", "viz")
    ]
    service = ImageService(
        originals=stores[0],
        visualizations=stores[1],
        metadata=SqlAlchemyMetadataRepository(postgres_engine),
    )
    try:
        async for http in client_for(make_app(service)):
            answers = [await _upload(http, name=f"p{index}.jpg") for index in range(2)]
        assert [answer.status_code for answer in answers] == [503, 503]
        assert all(answer.headers["content-type"] == PROBLEM for answer in answers)
        retry_after = int(answers[1].headers["retry-after"])
        assert 1 <= retry_after <= 30
        assert answers[1].json()["retry_after"] == retry_after
        # Nothing became an image; the store could not be reached to undo, so the
        # records stay hidden until reconcile() finishes them (the service's design).
        states = {r.state.value async for r in service.metadata.records()}
        assert "ready" not in states
    finally:
        await service.aclose()
