"""``images_router``: the service's operations as FastAPI routes, ready to mount.

Every route authenticates with the host's dependency, asks the host's
authorizer ``(user, action, session_id) -> bool`` before it changes or shows
anything (403 otherwise), answers with a pydantic model, and leaves errors to
:func:`~demeter_storage.fastapi.install_exception_handlers` (problem+json).
Uploads are ``multipart/form-data`` read as they arrive (see
:mod:`demeter_storage.fastapi.forms`): the file streams to the store.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, Final

from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.params import Depends as DependsParam
from fastapi.responses import StreamingResponse

from demeter_storage.domain.errors import ImageNotFound
from demeter_storage.domain.keys import validate_session_id
from demeter_storage.fastapi import downloads
from demeter_storage.fastapi.authorization import Authorizer, Routing, anonymous
from demeter_storage.fastapi.models import (
    DirectUploadRequest,
    DirectUploadResponse,
    ImagePageResponse,
    PresignedUrlRequest,
    PresignedUrlResponse,
    S3ImageResponse,
)
from demeter_storage.fastapi.problems import problem_responses
from demeter_storage.fastapi.uploads import add_upload_routes
from demeter_storage.service.image_service import ImageService

__all__ = ["images_router"]

_DOWNLOAD_HEADERS: Final = {
    "ETag": {"description": "The image's SHA-256, quoted.", "schema": {"type": "string"}},
    "Accept-Ranges": {"schema": {"type": "string"}},
}
_DOWNLOAD_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "description": "The image's bytes (streamed, with its content type).",
        "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}},
        "headers": _DOWNLOAD_HEADERS,
    },
    206: {
        "description": "One byte range of the image (`Range: bytes=...`).",
        "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}},
        "headers": {
            **_DOWNLOAD_HEADERS,
            "Content-Range": {"schema": {"type": "string"}},
        },
    },
    304: {"description": "`If-None-Match` names the current ETag.", "headers": _DOWNLOAD_HEADERS},
    416: {
        "description": "The range starts past the end of the image.",
        "headers": {"Content-Range": {"schema": {"type": "string"}}},
    },
}


def images_router(
    *,
    authorize: Authorizer,
    authenticate: Callable[..., Any] = anonymous,
    prefix: str = "",
    tags: Sequence[str] = ("images",),
    dependencies: Sequence[DependsParam] = (),
    operation_id_prefix: str = "",
) -> APIRouter:
    """The image routes, to mount with ``app.include_router(router, prefix=...)``.

    Args:
        authorize: ``(user, action, session_id) -> bool`` (or awaitable): called
            before every route changes or shows anything; False is a 403 and
            nothing changes. Pass :func:`allow_all` to allow everything.
        authenticate: a FastAPI dependency returning the user (it may raise
            ``HTTPException(401)``); its value is the authorizer's ``user``.
        prefix: a prefix of the router's own (``include_router`` can add more).
        tags: OpenAPI tags of every route.
        dependencies: more dependencies run before every route.
        operation_id_prefix: put before every ``operation_id`` (to mount two routers).

    The routes (under the prefix):

    =======  ======================================  ========================
    Method   Path                                    operation_id
    =======  ======================================  ========================
    POST     /sessions/{session_id}/originals         upload_original
    POST     /sessions/{session_id}/visualizations    upload_visualization
    GET      /sessions/{session_id}/images            list_session_images
    GET      /images/{image_id}                       get_image
    GET      /images/{image_id}/content               download_image
    DELETE   /images/{image_id}                       delete_image
    POST     /presigned-urls                          create_presigned_url
    POST     /sessions/{session_id}/direct-uploads    begin_direct_upload
    POST     /direct-uploads/{image_id}/complete      complete_direct_upload
    =======  ======================================  ========================
    """
    router = APIRouter(prefix=prefix, tags=list(tags), dependencies=list(dependencies))
    routing = Routing(authorize, Depends(authenticate), operation_id_prefix)
    add_upload_routes(router, routing)
    _read_routes(router, routing)
    _change_routes(router, routing)
    return router


def _read_routes(router: APIRouter, ctx: Routing) -> None:
    """Describe, list, download, presign."""

    @router.get(
        "/sessions/{session_id}/images",
        response_model=ImagePageResponse,
        operation_id=ctx.operation("list_session_images"),
        summary="List a session's images, a page at a time",
        responses=problem_responses(403, 422, 503),
    )
    async def list_session_images(
        session_id: str,
        limit: int = Query(50, ge=1, le=1000, description="Images per page."),
        cursor: str | None = Query(
            None, max_length=4096, description="`next_cursor` of the previous page."
        ),
        user: Any = ctx.user,
        service: ImageService = ctx.service,
    ) -> ImagePageResponse:
        """A page of the session's ready images, originals and visualizations, in key order."""
        session = validate_session_id(session_id)
        await ctx.allow(user, "read", session)
        page = await service.list_session_images(session, limit=limit, cursor=cursor)
        return ImagePageResponse.from_domain(page)

    @router.get(
        "/images/{image_id}",
        response_model=S3ImageResponse,
        operation_id=ctx.operation("get_image"),
        summary="Describe an image",
        responses=problem_responses(403, 404, 422, 503),
    )
    async def get_image(
        image_id: uuid.UUID,
        user: Any = ctx.user,
        service: ImageService = ctx.service,
    ) -> S3ImageResponse:
        """The image, with a presigned URL valid for the service's default expiry."""
        return S3ImageResponse.from_domain(await ctx.readable(service, user, image_id))

    @router.get(
        "/images/{image_id}/content",
        response_class=StreamingResponse,
        operation_id=ctx.operation("download_image"),
        summary="Download an image (streamed; one byte range; ETag)",
        responses={**_DOWNLOAD_RESPONSES, **problem_responses(403, 404, 422, 502, 503)},
    )
    async def download_image(
        image_id: uuid.UUID,
        range_: str | None = Header(
            None, alias="Range", description="One byte range, `bytes=first-last`."
        ),
        if_none_match: str | None = Header(
            None, alias="If-None-Match", description="ETags the client holds (304 if current)."
        ),
        user: Any = ctx.user,
        service: ImageService = ctx.service,
    ) -> Response:
        """The image's bytes, streamed: ``Range`` for a part, ``If-None-Match`` for a 304."""
        image = await ctx.readable(service, user, image_id)
        size = image.size or 0
        headers = {
            "Accept-Ranges": "bytes",
            "Content-Disposition": downloads.content_disposition(image.filename),
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, max-age=300",
        }
        tag = downloads.etag(image)
        if tag is not None:
            headers["ETag"] = tag
            if downloads.matches(if_none_match, tag):
                return Response(status_code=304, headers=headers)
        wanted = downloads.byte_range(range_, size)
        if wanted == "unsatisfiable":
            return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
        if wanted is None:
            headers["Content-Length"] = str(size)
            return StreamingResponse(
                await downloads.primed(downloads.whole(service, image)),
                media_type=image.content_type,
                headers=headers,
            )
        start, end = wanted
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        headers["Content-Length"] = str(end - start)
        return StreamingResponse(
            await downloads.primed(downloads.part(service, image, start, end)),
            status_code=206,
            media_type=image.content_type,
            headers=headers,
        )

    @router.post(
        "/presigned-urls",
        response_model=PresignedUrlResponse,
        operation_id=ctx.operation("create_presigned_url"),
        summary="Create a presigned download URL",
        responses=problem_responses(400, 403, 404, 422, 503),
    )
    async def create_presigned_url(
        body: PresignedUrlRequest,
        user: Any = ctx.user,
        service: ImageService = ctx.service,
    ) -> PresignedUrlResponse:
        """A URL that downloads the object for ``expiry_hours`` (1 to 168) without the API."""
        session = validate_session_id(body.s3_key.split("/", 1)[0])
        await ctx.allow(user, "read", session)
        store = service.store_for(body.bucket)
        hours = body.expiry_hours or service.config.default_expiry_hours
        now = service.now()
        url = await service.generate_presigned_url(body.s3_key, store.name, hours)
        return PresignedUrlResponse(
            url=url,
            s3_key=body.s3_key,
            bucket=store.name,
            expiry_hours=hours,
            expires_at=now + timedelta(hours=hours),
        )


def _change_routes(router: APIRouter, ctx: Routing) -> None:
    """Delete, and the two steps of a direct upload."""

    @router.delete(
        "/images/{image_id}",
        status_code=204,
        response_class=Response,
        operation_id=ctx.operation("delete_image"),
        summary="Delete an image with its thumbnail and visualizations",
        responses=problem_responses(403, 404, 422, 503),
    )
    async def delete_image(
        image_id: uuid.UUID,
        user: Any = ctx.user,
        service: ImageService = ctx.service,
    ) -> Response:
        """Delete the image; 404 when there is none (a second delete, say)."""
        image = await service.get_image(image_id)
        await ctx.allow(user, "delete", image.session_id)
        if not await service.delete_image(image.image_id):
            raise ImageNotFound(image.image_id)
        return Response(status_code=204)

    @router.post(
        "/sessions/{session_id}/direct-uploads",
        status_code=201,
        response_model=DirectUploadResponse,
        operation_id=ctx.operation("begin_direct_upload"),
        summary="Begin an upload the client posts straight to the store",
        responses=problem_responses(400, 403, 409, 422, 503),
    )
    async def begin_direct_upload(
        session_id: str,
        body: DirectUploadRequest,
        user: Any = ctx.user,
        service: ImageService = ctx.service,
    ) -> DirectUploadResponse:
        """An HTML form (presigned POST) for the photo; complete it once posted."""
        session = validate_session_id(session_id)
        await ctx.allow(user, "upload_original", session)
        upload = await service.begin_direct_upload(
            session, body.filename, body.content_type, body.size
        )
        return DirectUploadResponse.from_domain(upload)

    @router.post(
        "/direct-uploads/{image_id}/complete",
        response_model=S3ImageResponse,
        operation_id=ctx.operation("complete_direct_upload"),
        summary="Complete a direct upload: check what arrived and make it ready",
        responses=problem_responses(403, 404, 409, 422, 503),
    )
    async def complete_direct_upload(
        image_id: uuid.UUID,
        user: Any = ctx.user,
        service: ImageService = ctx.service,
    ) -> S3ImageResponse:
        """Check the posted photo (size, type, bytes) and make it a ready image."""
        record = await service.metadata.get(image_id)
        if record is None:
            raise ImageNotFound(image_id)
        await ctx.allow(user, "upload_original", record.session_id)
        return S3ImageResponse.from_domain(await service.complete_direct_upload(image_id))
