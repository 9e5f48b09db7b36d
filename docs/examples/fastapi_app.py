"""A FastAPI app on demeter-storage: streamed and direct uploads, presigned URLs, deletes.

Run it: ``pip install demeter-storage fastapi uvicorn`` then
``uvicorn fastapi_app:app`` (from ``docs/examples``). The service comes from
``build_service()`` (the environment's settings) and is injected with
``Depends(get_service)``; tests override that dependency with the pytest
plugin's ``memory_image_service`` (see ``tests/test_fastapi_example.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from pydantic import BaseModel

from demeter_storage import StorageUnavailable, UploadAlreadyCompleted, ValidationError
from demeter_storage.bootstrap import build_service
from demeter_storage.domain.errors import ImageAlreadyExists, ImageNotFound
from demeter_storage.service.image_service import ImageService
from demeter_storage.service.schemas import UploadRequest


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Build the service once at start-up; close it at shutdown."""
    app.state.service = await build_service()
    try:
        yield
    finally:
        await app.state.service.aclose()


app = FastAPI(title="Demeter photos", lifespan=lifespan)


def get_service(request: Request) -> ImageService:
    """The service (tests override this dependency)."""
    service: ImageService = request.app.state.service
    return service


Service = Annotated[ImageService, Depends(get_service)]


@app.put("/sessions/{session_id}/photos/{filename}", status_code=201)
async def upload_photo(
    session_id: str, filename: str, request: Request, service: Service
) -> dict[str, Any]:
    """Stream the request body into the store; never hold the photo in memory."""
    length = request.headers.get("content-length")
    upload = UploadRequest(
        filename,
        request.headers.get("content-type", "application/octet-stream"),
        size=int(length) if length and length.isdigit() else None,
    )
    try:
        image = await service.upload_original(request.stream(), session_id, upload)
    except ImageAlreadyExists as exc:
        raise HTTPException(409, str(exc)) from exc
    except ValidationError as exc:
        raise HTTPException(422, str(exc)) from exc
    except StorageUnavailable as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "30"}) from exc
    return image.to_dict()


class DirectUploadRequest(BaseModel):
    """What the phone says about the photo it is about to send."""

    filename: str
    content_type: str
    size: int


@app.post("/sessions/{session_id}/direct-uploads", status_code=201)
async def begin_direct_upload(
    session_id: str, body: DirectUploadRequest, service: Service
) -> dict[str, Any]:
    """The form the phone posts the photo with, straight to the store (not through us)."""
    try:
        upload = await service.begin_direct_upload(
            session_id, body.filename, body.content_type, body.size
        )
    except ImageAlreadyExists as exc:
        raise HTTPException(409, str(exc)) from exc
    except (ValidationError, TypeError) as exc:
        raise HTTPException(422, str(exc)) from exc
    return upload.to_dict()


@app.post("/direct-uploads/{image_id}/complete")
async def complete_direct_upload(image_id: uuid.UUID, service: Service) -> dict[str, Any]:
    """Check what the phone posted and make it a ready image."""
    try:
        image = await service.complete_direct_upload(image_id)
    except UploadAlreadyCompleted as exc:
        raise HTTPException(409, str(exc)) from exc
    except ValidationError as exc:
        raise HTTPException(422, str(exc)) from exc
    except ImageNotFound as exc:
        raise HTTPException(404, "no such direct upload") from exc
    return image.to_dict()


@app.get("/images/{image_id}/url")
async def photo_url(image_id: uuid.UUID, service: Service, hours: int = 1) -> dict[str, str]:
    """A presigned GET URL of an image."""
    try:
        image = await service.get_image(image_id)
        url = await service.generate_presigned_url(image.s3_key, image.bucket, hours)
    except ValidationError as exc:
        raise HTTPException(422, str(exc)) from exc
    except LookupError as exc:
        raise HTTPException(404, "no such image") from exc
    return {"url": url}


@app.delete("/images/{image_id}", status_code=204)
async def delete_photo(image_id: uuid.UUID, service: Service) -> Response:
    """Delete an image with its objects; 404 when there is none."""
    if not await service.delete_image(image_id):
        raise HTTPException(404, "no such image")
    return Response(status_code=204)
