"""The FastAPI example of docs/examples, with the plugin's in-memory service swapped in."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest

from demeter_storage.service.image_service import ImageService
from demeter_storage.web.app import SignedUrlApp

pytest.importorskip("fastapi", reason="FastAPI is not installed (the example needs it)")
httpx = pytest.importorskip("httpx", reason="httpx is not installed")

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "fastapi_app.py"
SAMPLE = EXAMPLE.parent.parent / "assets" / "sample-leaf.jpg"


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fastapi_app", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fastapi_app"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
async def client(memory_image_service: ImageService) -> AsyncIterator[object]:
    example = _load_example()
    example.app.dependency_overrides[example.get_service] = lambda: memory_image_service
    transport = httpx.ASGITransport(app=example.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as http:
        yield http


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 1000):
        yield data[start : start + 1000]


async def test_upload_presign_and_delete(
    client: object, memory_image_service: ImageService
) -> None:
    photo = SAMPLE.read_bytes()
    created = await client.put(  # type: ignore[attr-defined]
        "/sessions/field-7/photos/leaf.jpg",
        content=_chunks(photo),
        headers={"content-type": "image/jpeg"},
    )
    assert created.status_code == 201, created.text
    image = created.json()
    assert (image["s3_key"], image["size"]) == ("field-7/leaf.jpg", len(photo))
    assert await memory_image_service.download_original("field-7/leaf.jpg") == photo

    url = await client.get(f"/images/{image['image_id']}/url", params={"hours": 2})  # type: ignore[attr-defined]
    assert url.status_code == 200
    assert "X-Demeter-Expires=7200" in url.json()["url"]
    assert (
        await client.get(f"/images/{image['image_id']}/url", params={"hours": 999})
    ).status_code == 422  # type: ignore[attr-defined]

    again = await client.put(  # type: ignore[attr-defined]
        "/sessions/field-7/photos/leaf.jpg", content=photo, headers={"content-type": "image/jpeg"}
    )
    assert again.status_code == 409

    assert (await client.delete(f"/images/{image['image_id']}")).status_code == 204  # type: ignore[attr-defined]
    assert (await client.delete(f"/images/{image['image_id']}")).status_code == 404  # type: ignore[attr-defined]
    assert (await memory_image_service.audit()).consistent


async def test_bad_uploads_are_refused_and_leave_nothing(
    client: object, memory_image_service: ImageService
) -> None:
    not_an_image = await client.put(  # type: ignore[attr-defined]
        "/sessions/s/photos/a.jpg", content=b"plain text", headers={"content-type": "image/jpeg"}
    )
    assert not_an_image.status_code == 422
    bad_session = await client.put(  # type: ignore[attr-defined]
        "/sessions/..%2Fetc/photos/a.jpg",
        content=SAMPLE.read_bytes(),
        headers={"content-type": "image/jpeg"},
    )
    assert bad_session.status_code in (404, 422)
    assert [info async for info in memory_image_service.originals.list()] == []
    missing = await client.get("/images/00000000-0000-0000-0000-000000000000/url")  # type: ignore[attr-defined]
    assert missing.status_code == 404


async def test_a_direct_upload_is_begun_posted_and_completed(
    client: object, memory_image_service: ImageService
) -> None:
    photo = SAMPLE.read_bytes()
    begun = await client.post(  # type: ignore[attr-defined]
        "/sessions/field-7/direct-uploads",
        json={"filename": "leaf.jpg", "content_type": "image/jpeg", "size": len(photo)},
    )
    assert begun.status_code == 201, begun.text
    upload = begun.json()
    assert set(upload) >= {"image_id", "url", "fields", "expires_at", "max_size"}
    # The phone posts the form to the store's own server (here, the ASGI app of
    # the in-memory store), not to the API.
    store = memory_image_service.originals
    transport = httpx.ASGITransport(app=SignedUrlApp({store.name: store}))
    async with httpx.AsyncClient(transport=transport) as phone:
        posted = await phone.post(
            f"http://store.test/{store.name}",
            data=upload["fields"],
            files={"file": ("leaf.jpg", photo, "image/jpeg")},
        )
    assert posted.status_code == 204, posted.text
    path = f"/direct-uploads/{upload['image_id']}/complete"
    completed = await client.post(path)  # type: ignore[attr-defined]
    assert completed.status_code == 200, completed.text
    assert completed.json()["size"] == len(photo)
    assert (await client.post(path)).status_code == 409  # type: ignore[attr-defined]
    unknown = "/direct-uploads/00000000-0000-4000-8000-000000000000/complete"
    assert (await client.post(unknown)).status_code == 404  # type: ignore[attr-defined]


async def test_bad_direct_uploads_are_refused(
    client: object, memory_image_service: ImageService
) -> None:
    for body in (
        {"filename": "a.jpg", "content_type": "image/jpeg", "size": 0},
        {"filename": "a.jpg", "content_type": "application/pdf", "size": 10},
        {"filename": "../a.jpg", "content_type": "image/jpeg", "size": 10},
    ):
        refused = await client.post("/sessions/s/direct-uploads", json=body)  # type: ignore[attr-defined]
        assert refused.status_code == 422, body
    begun = await client.post(  # type: ignore[attr-defined]
        "/sessions/s/direct-uploads",
        json={"filename": "a.jpg", "content_type": "image/jpeg", "size": 10},
    )
    early = await client.post(f"/direct-uploads/{begun.json()['image_id']}/complete")  # type: ignore[attr-defined]
    assert early.status_code == 422
    assert "nothing has arrived" in early.text


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
