"""The host decides who may do what: every route asks the authorizer first, and a no is a 403."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from demeter_storage.service.image_service import ImageService
from demeter_storage.service.schemas import UploadRequest
from tests.fastapi.support import PHOTO, PREFIX, PROBLEM, client_for, make_app, snapshot

Asked = list[tuple[Any, str, str]]
Send = Callable[[Any, dict[str, str]], Awaitable[Any]]


async def _seed(service: ImageService) -> dict[str, str]:
    """A ready original, a direct upload in flight; their ids."""
    image = await service.upload_original(PHOTO, "field-7", UploadRequest("leaf.jpg", "image/jpeg"))
    direct = await service.begin_direct_upload("field-7", "next.jpg", "image/jpeg", len(PHOTO))
    return {"image": str(image.image_id), "direct": str(direct.image_id), "key": image.s3_key}


ROUTES: dict[str, tuple[str, Send]] = {
    "upload_original": (
        "upload_original",
        lambda c, ids: c.post(
            f"{PREFIX}/sessions/field-7/originals", files={"file": ("new.jpg", PHOTO, "image/jpeg")}
        ),
    ),
    "upload_visualization": (
        "upload_visualization",
        lambda c, ids: c.post(
            f"{PREFIX}/sessions/field-7/visualizations",
            data={"parent_id": ids["image"]},
            files={"file": ("v.jpg", PHOTO, "image/jpeg")},
        ),
    ),
    "list_session_images": ("read", lambda c, ids: c.get(f"{PREFIX}/sessions/field-7/images")),
    "get_image": ("read", lambda c, ids: c.get(f"{PREFIX}/images/{ids['image']}")),
    "download_image": ("read", lambda c, ids: c.get(f"{PREFIX}/images/{ids['image']}/content")),
    "delete_image": ("delete", lambda c, ids: c.delete(f"{PREFIX}/images/{ids['image']}")),
    "create_presigned_url": (
        "read",
        lambda c, ids: c.post(f"{PREFIX}/presigned-urls", json={"s3_key": ids["key"]}),
    ),
    "begin_direct_upload": (
        "upload_original",
        lambda c, ids: c.post(
            f"{PREFIX}/sessions/field-7/direct-uploads",
            json={"filename": "more.jpg", "content_type": "image/jpeg", "size": 10},
        ),
    ),
    "complete_direct_upload": (
        "upload_original",
        lambda c, ids: c.post(f"{PREFIX}/direct-uploads/{ids['direct']}/complete"),
    ),
}


def test_every_route_is_in_the_table() -> None:
    spec = make_app(None).openapi()
    operations = {op["operationId"] for path in spec["paths"].values() for op in path.values()}
    assert operations == set(ROUTES)


@pytest.mark.parametrize("operation", sorted(ROUTES))
@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
async def test_a_denied_request_is_403_and_changes_nothing(
    memory_image_service: ImageService, operation: str, asynchronous: bool
) -> None:
    ids = await _seed(memory_image_service)
    before = await snapshot(memory_image_service)
    asked: Asked = []

    def deny(user: Any, action: str, session_id: str) -> bool:
        asked.append((user, action, session_id))
        return False

    async def deny_later(user: Any, action: str, session_id: str) -> bool:
        return deny(user, action, session_id)

    app = make_app(
        memory_image_service,
        authorize=deny_later if asynchronous else deny,
        authenticate=lambda: "worker-3",
    )
    action, send = ROUTES[operation]
    async for client in client_for(app):
        answer = await send(client, ids)
    assert answer.status_code == 403, answer.text
    assert answer.headers["content-type"] == PROBLEM
    assert answer.json()["status"] == 403
    assert asked == [("worker-3", action, "field-7")]
    assert await snapshot(memory_image_service) == before


@pytest.mark.parametrize("operation", sorted(ROUTES))
async def test_an_allowed_request_goes_through(
    memory_image_service: ImageService, operation: str
) -> None:
    ids = await _seed(memory_image_service)
    asked: Asked = []

    def allow_own_sessions(user: Any, action: str, session_id: str) -> bool:
        asked.append((user, action, session_id))
        return session_id == "field-7"

    if operation == "complete_direct_upload":  # post the photo the upload waits for
        record = await memory_image_service.metadata.get(uuid.UUID(ids["direct"]))
        assert record is not None
        from demeter_storage.domain.keys import staging_key  # noqa: PLC0415

        await memory_image_service.originals.put(
            staging_key(ids["direct"]), PHOTO, content_type="image/jpeg"
        )
    app = make_app(memory_image_service, authorize=allow_own_sessions, authenticate=lambda: 7)
    action, send = ROUTES[operation]
    async for client in client_for(app):
        answer = await send(client, ids)
    assert answer.status_code < 300, answer.text
    assert asked[-1] == (7, action, "field-7")


async def test_the_authorizer_sees_the_images_session_not_the_callers_claim(
    memory_image_service: ImageService,
) -> None:
    ids = await _seed(memory_image_service)

    def only_field_8(user: Any, action: str, session_id: str) -> bool:
        return session_id == "field-8"

    async for client in client_for(make_app(memory_image_service, authorize=only_field_8)):
        assert (await client.get(f"{PREFIX}/images/{ids['image']}")).status_code == 403
        foreign_key = await client.post(
            f"{PREFIX}/presigned-urls",
            json={"s3_key": ids["key"], "bucket": "demeter-photos-original"},
        )
        assert foreign_key.status_code == 403


async def test_an_authentication_dependency_that_refuses_is_the_hosts_answer(
    memory_image_service: ImageService,
) -> None:
    from fastapi import HTTPException  # noqa: PLC0415

    def nobody() -> None:
        raise HTTPException(401, "log in")

    app = make_app(memory_image_service, authenticate=nobody)
    async for client in client_for(app):
        answer = await client.get(f"{PREFIX}/sessions/field-7/images")
    assert answer.status_code == 401
