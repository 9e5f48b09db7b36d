"""``images_router``: the service's operations as FastAPI routes, ready to mount.

Every route authenticates with the host's dependency, asks the host's
authorizer ``(user, action, session_id) -> bool`` before it changes or shows
anything (403 otherwise), answers with a pydantic model, and leaves errors to
:func:`~demeter_storage.fastapi.install_exception_handlers` (problem+json).
Uploads are ``multipart/form-data`` read as they arrive (see
:mod:`demeter_storage.fastapi.forms`): the file streams to the store.
"""

from __future__ import annotations

import inspect
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, Final, Literal, TypeAlias, TypeVar

import pydantic
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.params import Depends as DependsParam
from fastapi.responses import StreamingResponse

from demeter_storage.domain.errors import ImageNotFound, ValidationError
from demeter_storage.domain.images import ACCEPTED_TYPES, normalise_image_type
from demeter_storage.domain.keys import validate_session_id
from demeter_storage.fastapi import downloads
from demeter_storage.fastapi.forms import FILE_FIELD, FormRefused, StreamedForm, open_form
from demeter_storage.fastapi.lifespan import get_image_service
from demeter_storage.fastapi.models import (
    DirectUploadRequest,
    DirectUploadResponse,
    ImagePageResponse,
    PresignedUrlRequest,
    PresignedUrlResponse,
    S3ImageResponse,
    S3ImageUploadRequest,
    VisualizationUploadRequest,
)
from demeter_storage.fastapi.problems import Denied, TooLarge, problem_responses
from demeter_storage.service.image_service import ImageService
from demeter_storage.service.schemas import ImageResponse

__all__ = ["Action", "Authorizer", "allow_all", "anonymous", "images_router"]

Action: TypeAlias = Literal["upload_original", "upload_visualization", "read", "delete"]
"""What a request wants to do in a session; the authorizer's second argument.

* ``upload_original``: upload an original, begin or complete a direct upload;
* ``upload_visualization``: upload a visualization;
* ``read``: describe, list, download an image, or presign its URL;
* ``delete``: delete an image (with its thumbnail and visualizations).
"""

Authorizer: TypeAlias = Callable[[Any, Action, str], bool | Awaitable[bool]]
"""``(user, action, session_id) -> bool`` (or an awaitable of it): may ``user`` do it?"""

_Model = TypeVar("_Model", bound=pydantic.BaseModel)

FORM_OVERHEAD: Final = 1024 * 1024
"""Bytes a form may carry beyond the file (its fields, part headers and boundaries)."""

_MULTIPART: Final = "multipart/form-data"


def allow_all(user: Any, action: Action, session_id: str) -> bool:
    """An authorizer that allows everything (tests, or an app behind its own gateway)."""
    return True


def anonymous() -> None:
    """An authentication dependency that knows nobody: the authorizer gets ``None``."""


def _form_schema(model: type[pydantic.BaseModel], file_description: str) -> dict[str, Any]:
    """The multipart body's schema: ``model``'s fields (the optional ones may be absent), the file.

    A form field is text: an optional field is simply absent (never null), and
    the ``metadata`` object is sent as JSON text.
    """
    source = model.model_json_schema()
    properties: dict[str, Any] = {}
    for name, schema in source["properties"].items():
        field = {key: value for key, value in schema.items() if key not in ("anyOf", "default")}
        branches = [branch for branch in schema.get("anyOf", []) if branch.get("type") != "null"]
        if branches:
            field.update(branches[0])
        if field.get("type") == "object":
            field = {
                "type": "string",
                "contentMediaType": "application/json",
                "description": f"A JSON object. {schema.get('description', '')}".strip(),
                "examples": [json.dumps(example) for example in schema.get("examples", [])],
            }
        properties[name] = field
    properties[FILE_FIELD] = {
        "type": "string",
        "format": "binary",
        "description": file_description,
    }
    return {
        "type": "object",
        "properties": properties,
        "required": [FILE_FIELD, *source.get("required", [])],
        "additionalProperties": False,
    }


def _multipart_body(model: type[pydantic.BaseModel], file_description: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": (
                f"A {_MULTIPART} form: the fields, then the image as the last part, named "
                f"{FILE_FIELD!r} (it streams to the store as it arrives)."
            ),
            "content": {
                _MULTIPART: {
                    "schema": _form_schema(model, file_description),
                    "encoding": {FILE_FIELD: {"contentType": ", ".join(ACCEPTED_TYPES)}},
                }
            },
        }
    }


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


async def _allow(authorize: Authorizer, user: Any, action: Action, session_id: str) -> None:
    verdict = authorize(user, action, session_id)
    if inspect.isawaitable(verdict):
        verdict = await verdict
    if verdict is not True:
        raise Denied(f"you may not {action.replace('_', ' ')} in session {session_id!r}")


def _fields(form: StreamedForm, model: type[pydantic.BaseModel]) -> dict[str, Any]:
    """The form's fields as ``model``'s input (metadata parsed from its JSON)."""
    values: dict[str, Any] = dict(form.fields)
    if "metadata" in values:
        try:
            values["metadata"] = json.loads(values["metadata"])
        except ValueError:
            raise RequestValidationError(
                [{"loc": ("body", "metadata"), "msg": "metadata must be a JSON object"}]
            ) from None
    return values


def _parse(model: type[_Model], values: dict[str, Any]) -> _Model:
    try:
        return model.model_validate(values)
    except pydantic.ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        ) from None


def _file_type(form: StreamedForm, declared: str | None) -> str | None:
    """The content type of the file: the field's, the file part's, or None (taken from its bytes).

    Raises:
        FormRefused: both are given and disagree.
    """
    part = form.content_type
    if part and part.split(";", 1)[0].strip().lower() == "application/octet-stream":
        part = None  # what clients send when they do not know
    if declared and part:
        try:
            same = normalise_image_type(declared) == normalise_image_type(part)
        except ValidationError:
            same = declared.strip().lower() == part.strip().lower()
        if not same:
            raise FormRefused(
                f"the file part says {part!r} but content_type says {declared!r}; send one type"
            )
    return declared or part


def _filename(form: StreamedForm, declared: str | None) -> str:
    name = declared or form.filename
    if not name:
        raise FormRefused(
            "name the photo: send a filename field, or a filename in the file part's "
            "Content-Disposition"
        )
    return name


def _check_length(request: Request, service: ImageService) -> None:
    """Refuse a body whose declared length is beyond the service's limit, unread (413)."""
    length = request.headers.get("content-length", "")
    limit = service.config.max_upload_bytes + FORM_OVERHEAD
    if length.isdigit() and (len(length) > 18 or int(length) > limit):
        raise TooLarge(
            f"the body is larger than the {service.config.max_upload_bytes} bytes an upload "
            "may have; upload a smaller file"
        )


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
    routing = _Routing(authorize, Depends(authenticate), operation_id_prefix)
    _upload_routes(router, routing)
    _read_routes(router, routing)
    _change_routes(router, routing)
    return router


class _Routing:
    """What every route needs: the authorizer, the user's dependency, the operation ids."""

    def __init__(self, authorize: Authorizer, user: Any, operation_id_prefix: str) -> None:
        self.authorize = authorize
        self.user = user
        self.service = Depends(get_image_service)
        self.prefix = operation_id_prefix

    def operation(self, name: str) -> str:
        return f"{self.prefix}{name}"

    async def allow(self, user: Any, action: Action, session_id: str) -> None:
        await _allow(self.authorize, user, action, session_id)

    async def readable(
        self, service: ImageService, user: Any, image_id: uuid.UUID
    ) -> ImageResponse:
        image = await service.get_image(image_id)
        await self.allow(user, "read", image.session_id)
        return image


def _upload_routes(router: APIRouter, ctx: _Routing) -> None:
    """The two streamed multipart uploads."""

    @router.post(
        "/sessions/{session_id}/originals",
        status_code=201,
        response_model=S3ImageResponse,
        operation_id=ctx.operation("upload_original"),
        summary="Upload an original photo",
        responses=problem_responses(403, 409, 413, 422, 503),
        openapi_extra=_multipart_body(
            S3ImageUploadRequest, "The photo (JPEG, PNG, WebP, TIFF, HEIC or HEIF)."
        ),
    )
    async def upload_original(
        session_id: str,
        request: Request,
        user: Any = ctx.user,
        service: ImageService = ctx.service,
    ) -> S3ImageResponse:
        """Store a photo under ``{session_id}/{filename}``, streamed as it arrives."""
        session = validate_session_id(session_id)
        await ctx.allow(user, "upload_original", session)
        _check_length(request, service)
        form = await open_form(request)
        fields = _parse(S3ImageUploadRequest, _fields(form, S3ImageUploadRequest))
        content_type = _file_type(form, fields.content_type)
        if content_type is None:
            raise FormRefused(
                "say what the photo is: send a content_type field, or a Content-Type in the "
                "file part (image/jpeg, say)"
            )
        upload = fields.to_domain(_filename(form, fields.filename), content_type)
        image = await service.upload_original(form.file(), session, upload)
        return S3ImageResponse.from_domain(image)

    @router.post(
        "/sessions/{session_id}/visualizations",
        status_code=201,
        response_model=S3ImageResponse,
        operation_id=ctx.operation("upload_visualization"),
        summary="Upload a visualization drawn from an original",
        responses=problem_responses(403, 409, 413, 422, 503),
        openapi_extra=_multipart_body(
            VisualizationUploadRequest, "The image the ML pipeline drew."
        ),
    )
    async def upload_visualization(
        session_id: str,
        request: Request,
        user: Any = ctx.user,
        service: ImageService = ctx.service,
    ) -> S3ImageResponse:
        """Store a visualization under ``{session_id}/viz_{filename}``, linked to its original."""
        session = validate_session_id(session_id)
        await ctx.allow(user, "upload_visualization", session)
        _check_length(request, service)
        form = await open_form(request)
        fields = _parse(VisualizationUploadRequest, _fields(form, VisualizationUploadRequest))
        if fields.parent_id is not None:
            try:
                parent = await service.get_image(fields.parent_id)
            except ImageNotFound:  # a field of the form, not the resource asked for: 422
                raise ValidationError(
                    f"parent_id {fields.parent_id} is not a ready original image"
                ) from None
            if parent.session_id != session:
                raise ValidationError(
                    f"parent_id {fields.parent_id} is an image of another session; link "
                    "visualizations to originals of their own session"
                )
        image = await service.upload_visualization(
            form.file(),
            session,
            _filename(form, fields.filename),
            content_type=_file_type(form, fields.content_type),
            parent_id=fields.parent_id,
            metadata=fields.metadata,
        )
        return S3ImageResponse.from_domain(image)


def _read_routes(router: APIRouter, ctx: _Routing) -> None:
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


def _change_routes(router: APIRouter, ctx: _Routing) -> None:
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
