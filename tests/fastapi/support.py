"""Shared pieces of the FastAPI tests: an app around the router, photos, state snapshots."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the fastapi extra is not installed")
httpx = pytest.importorskip("httpx", reason="httpx is not installed")

from fastapi import FastAPI  # noqa: E402

from demeter_storage.fastapi import (  # noqa: E402
    Authorizer,
    allow_all,
    get_image_service,
    images_router,
    install_exception_handlers,
)
from demeter_storage.service.image_service import ImageService  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "docs" / "assets" / "sample-leaf.jpg"
PHOTO = SAMPLE.read_bytes()
PREFIX = "/photos"
PROBLEM = "application/problem+json"


def make_app(
    service: ImageService | None,
    *,
    authorize: Authorizer = allow_all,
    authenticate: Any = None,
) -> FastAPI:
    """An app with the router under /photos; ``service`` swapped in when given."""
    app = FastAPI()
    install_exception_handlers(app)
    options: dict[str, Any] = {"authorize": authorize}
    if authenticate is not None:
        options["authenticate"] = authenticate
    app.include_router(images_router(**options), prefix=PREFIX)
    if service is not None:
        app.dependency_overrides[get_image_service] = lambda: service
    return app


async def client_for(app: FastAPI) -> AsyncIterator[Any]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as client:
        yield client


async def upload(
    client: Any,
    session: str = "field-7",
    name: str = "leaf.jpg",
    data: bytes = PHOTO,
    content_type: str = "image/jpeg",
    **fields: Any,
) -> Any:
    """POST an original as a multipart form (the fields first, the file last)."""
    return await client.post(
        f"{PREFIX}/sessions/{session}/originals",
        data=fields,
        files={"file": (name, data, content_type)},
    )


async def snapshot(service: ImageService) -> tuple[list[str], list[tuple[str, str]]]:
    """Every object key of both stores and every record's (key, state)."""
    keys = [
        info.key
        for store in (service.originals, service.visualizations)
        async for info in store.list()
    ]
    rows = sorted([(r.key, r.state.value) async for r in service.metadata.records()])
    return sorted(keys), rows
