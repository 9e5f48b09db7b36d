"""The two streamed ``multipart/form-data`` upload routes and how their forms are read."""

from __future__ import annotations

import json
from typing import Any, Final, TypeVar

import pydantic
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError

from demeter_storage.domain.errors import ImageNotFound, ValidationError
from demeter_storage.domain.images import ACCEPTED_TYPES, normalise_image_type
from demeter_storage.domain.keys import validate_session_id
from demeter_storage.fastapi.authorization import Routing
from demeter_storage.fastapi.forms import FILE_FIELD, FormRefused, StreamedForm, open_form
from demeter_storage.fastapi.models import (
    S3ImageResponse,
    S3ImageUploadRequest,
    VisualizationUploadRequest,
)
from demeter_storage.fastapi.problems import TooLarge, problem_responses
from demeter_storage.service.image_service import ImageService

_Model = TypeVar("_Model", bound=pydantic.BaseModel)

FORM_OVERHEAD: Final = 1024 * 1024
"""Bytes a form may carry beyond the file (its fields, part headers and boundaries)."""

_MULTIPART: Final = "multipart/form-data"


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


def add_upload_routes(router: APIRouter, ctx: Routing) -> None:
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
