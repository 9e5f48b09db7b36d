"""The FastAPI example of docs/examples, with the plugin's in-memory service swapped in."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from demeter_storage.service.image_service import ImageService
from tests.fastapi.support import PHOTO, REPO, httpx, snapshot

EXAMPLE = REPO / "docs" / "examples" / "fastapi_app.py"
ANA = {"Authorization": "Bearer token-ana"}


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fastapi_app", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fastapi_app"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
async def client(memory_image_service: ImageService) -> AsyncIterator[Any]:
    example = _load_example()
    example.app.dependency_overrides[example.get_image_service] = lambda: memory_image_service
    transport = httpx.ASGITransport(app=example.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as http:
        yield http


async def test_a_worker_uploads_downloads_and_deletes_in_their_session(
    client: Any, memory_image_service: ImageService
) -> None:
    created = await client.post(
        "/photos/sessions/ana-field-7/originals",
        files={"file": ("leaf.jpg", PHOTO, "image/jpeg")},
        headers=ANA,
    )
    assert created.status_code == 201, created.text
    image = created.json()
    assert (image["s3_key"], image["size"]) == ("ana-field-7/leaf.jpg", len(PHOTO))
    content = await client.get(f"/photos/images/{image['image_id']}/content", headers=ANA)
    assert content.content == PHOTO
    url = await client.post(
        "/photos/presigned-urls", json={"s3_key": image["s3_key"], "expiry_hours": 2}, headers=ANA
    )
    assert "X-Demeter-Expires=7200" in url.json()["url"]
    assert (
        await client.delete(f"/photos/images/{image['image_id']}", headers=ANA)
    ).status_code == 204
    assert await snapshot(memory_image_service) == ([], [])


async def test_strangers_and_other_workers_are_turned_away(
    client: Any, memory_image_service: ImageService
) -> None:
    files = {"file": ("leaf.jpg", PHOTO, "image/jpeg")}
    anonymous = await client.post("/photos/sessions/ana-field-7/originals", files=files)
    assert anonymous.status_code == 401
    ben = await client.post(
        "/photos/sessions/ana-field-7/originals",
        files=files,
        headers={"Authorization": "Bearer token-ben"},
    )
    assert ben.status_code == 403
    assert ben.headers["content-type"] == "application/problem+json"
    assert await snapshot(memory_image_service) == ([], [])


def test_the_example_is_only_the_router_and_its_rules() -> None:
    lines = [
        line
        for line in EXAMPLE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith(("#", '"', "'"))
    ]
    assert len(lines) < 40
    assert "try:" not in EXAMPLE.read_text(encoding="utf-8")


def test_the_plugin_fixtures(
    memory_image_store: object, local_image_store: object, tmp_path: Path
) -> None:
    from demeter_storage import InMemoryImageStore, LocalImageStore  # noqa: PLC0415

    assert isinstance(memory_image_store, InMemoryImageStore)
    assert isinstance(local_image_store, LocalImageStore)
    assert Path(local_image_store.root).parent == tmp_path


def test_the_plugin_is_declared_for_pytest() -> None:
    from importlib.metadata import entry_points  # noqa: PLC0415

    plugins = {e.name: e.value for e in entry_points(group="pytest11")}
    assert plugins["demeter_storage"] == "demeter_storage.testing.plugin"
