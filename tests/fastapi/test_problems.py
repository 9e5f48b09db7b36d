"""Errors as HTTP: each typed error's status, its RFC 9457 body and its headers."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from demeter_storage import (
    ConfigurationError,
    ImageAlreadyExists,
    ImageNotFound,
    IntegrityError,
    LostOwnership,
    ObjectChanged,
    ObjectExists,
    ObjectNotFound,
    StorageError,
    StorageSettings,
    StorageUnavailable,
    UploadAlreadyCompleted,
    ValidationError,
)
from demeter_storage.fastapi import Denied, TooLarge, get_image_service, lifespan
from demeter_storage.service.image_service import ImageService
from tests.fastapi.support import PREFIX, PROBLEM, client_for, make_app

IMAGE = uuid.UUID("00000000-0000-4000-8000-000000000001")


def _lost() -> LostOwnership:
    record = type("R", (), {"image_id": IMAGE, "key": "s/a.jpg"})()
    return LostOwnership(record)  # type: ignore[arg-type]


CASES: list[tuple[BaseException, int, dict[str, Any]]] = [
    (ValidationError("bad name"), 422, {}),
    (ImageNotFound(IMAGE), 404, {}),
    (ObjectNotFound("s/a.jpg", "b"), 404, {}),
    (ImageAlreadyExists("b", "s/a.jpg", IMAGE), 409, {"existing_image_id": str(IMAGE)}),
    (UploadAlreadyCompleted(IMAGE), 409, {"image_id": str(IMAGE)}),
    (ObjectExists("s/a.jpg"), 409, {}),
    (ObjectChanged("s/a.jpg"), 409, {}),
    (_lost(), 409, {}),
    (StorageUnavailable("down", retry_after=7.2), 503, {"retry_after": 8}),
    (StorageUnavailable("down"), 503, {}),
    (IntegrityError("damaged"), 502, {}),
    (ConfigurationError("no bucket"), 500, {}),
    (StorageError("odd"), 500, {}),
    (Denied("no"), 403, {}),
    (TooLarge("big"), 413, {}),
]


@pytest.mark.parametrize(("error", "status", "extra"), CASES, ids=lambda v: type(v).__name__)
async def test_each_error_is_its_status_as_problem_json(
    memory_image_service: ImageService,
    monkeypatch: pytest.MonkeyPatch,
    error: BaseException,
    status: int,
    extra: dict[str, Any],
) -> None:
    async def fail(*args: object, **kwargs: object) -> object:
        raise error

    monkeypatch.setattr(memory_image_service, "list_session_images", fail)
    async for client in client_for(make_app(memory_image_service)):
        answer = await client.get(f"{PREFIX}/sessions/s/images")
    assert answer.status_code == status
    assert answer.headers["content-type"] == PROBLEM
    body = answer.json()
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert body["instance"] == f"{PREFIX}/sessions/s/images"
    for name, value in extra.items():
        assert body[name] == value
    if status == 503:
        assert answer.headers.get("retry-after") == (str(extra["retry_after"]) if extra else None)
    if type(error) is StorageError:
        assert "odd" not in body["detail"]  # a bug's text stays in the log


async def test_validation_errors_list_the_refused_fields(
    memory_image_service: ImageService,
) -> None:
    async for client in client_for(make_app(memory_image_service)):
        answer = await client.post(f"{PREFIX}/presigned-urls", json={"expiry_hours": 500})
    body = answer.json()
    assert answer.status_code == 422
    assert {tuple(error["loc"]) for error in body["errors"]} == {
        ("body", "s3_key"),
        ("body", "expiry_hours"),
    }


async def test_without_a_service_the_answer_says_what_to_wire(tmp_path: Path) -> None:
    async for client in client_for(make_app(None)):
        answer = await client.get(f"{PREFIX}/sessions/s/images")
    assert answer.status_code == 500
    assert "lifespan" in answer.json()["detail"]


async def test_the_lifespan_builds_the_service_and_closes_it(tmp_path: Path) -> None:
    from fastapi import FastAPI  # noqa: PLC0415

    settings = StorageSettings(backend="local", storage_root=tmp_path / "photos")
    app = make_app(None)
    async with lifespan(app, settings=settings):
        service = app.state.image_service
        assert isinstance(service, ImageService)
        async for client in client_for(app):
            listed = await client.get(f"{PREFIX}/sessions/s/images")
        assert listed.status_code == 200
        assert listed.json() == {"items": [], "next_cursor": None}
    assert not hasattr(app.state, "image_service")
    assert isinstance(FastAPI(lifespan=lifespan), FastAPI)


async def test_the_override_is_one_line(memory_image_service: ImageService) -> None:
    app = make_app(None)
    app.dependency_overrides[get_image_service] = lambda: memory_image_service
    async for client in client_for(app):
        assert (await client.get(f"{PREFIX}/sessions/s/images")).status_code == 200


@pytest.mark.parametrize("headers", [{}, {"Range": "bytes=0-9"}], ids=["whole", "range"])
async def test_a_store_down_before_the_first_byte_is_a_503_not_a_broken_200(
    memory_image_service: ImageService, monkeypatch: pytest.MonkeyPatch, headers: dict[str, str]
) -> None:
    from demeter_storage.service.schemas import UploadRequest  # noqa: PLC0415
    from tests.fastapi.support import PHOTO  # noqa: PLC0415

    image = await memory_image_service.upload_original(
        PHOTO, "s", UploadRequest("a.jpg", "image/jpeg")
    )

    def down(*args: object, **kwargs: object) -> object:
        async def chunks() -> Any:
            raise StorageUnavailable("the store is down", retry_after=3)
            yield b""

        return chunks()

    monkeypatch.setattr(memory_image_service.originals, "stream", down)
    async for client in client_for(make_app(memory_image_service)):
        answer = await client.get(f"{PREFIX}/images/{image.image_id}/content", headers=headers)
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "3"


async def test_http_errors_of_the_host_become_problems_with_their_headers(
    memory_image_service: ImageService,
) -> None:
    from fastapi import HTTPException  # noqa: PLC0415

    def nobody() -> None:
        raise HTTPException(401, "log in", headers={"WWW-Authenticate": "Bearer"})

    async for client in client_for(make_app(memory_image_service, authenticate=nobody)):
        answer = await client.get(f"{PREFIX}/sessions/s/images")
        garbage = await client.post(
            f"{PREFIX}/presigned-urls",
            content=b"\xff{",
            headers={"content-type": "application/json"},
        )
    assert (answer.status_code, answer.headers["www-authenticate"]) == (401, "Bearer")
    assert answer.json()["detail"] == "log in"
    assert answer.headers["content-type"] == PROBLEM
    assert garbage.status_code in (400, 401)
