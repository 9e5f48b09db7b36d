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
