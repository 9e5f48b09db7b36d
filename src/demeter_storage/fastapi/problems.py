"""Errors as HTTP: every typed error becomes a status and an RFC 9457 problem body.

=====================================  ======  =========================================
Error                                  Status  Extra members / headers
=====================================  ======  =========================================
:class:`Denied` (the authorizer)       403
``ImageNotFound``, ``ObjectNotFound``  404
``ImageAlreadyExists``                 409     ``existing_image_id``
``UploadAlreadyCompleted``             409     ``image_id``
``ObjectExists``, ``ObjectChanged``    409
``LostOwnership``                      409     (a newer attempt or a delete won the key)
:class:`TooLarge`                      413
``ValidationError``, bad fields        422     ``errors`` (for refused fields)
``IntegrityError``                     502     stored bytes differ from their checksum
``StorageUnavailable``                 503     ``retry_after`` and ``Retry-After``
``ConfigurationError``, other errors   500
=====================================  ======  =========================================

``IntegrityError`` is a 502: the store (upstream of this app) returned bytes
other than those uploaded. It is not the client's mistake, a retry will not
help until the object is restored, and keeping it apart from 500 (a bug or a
misconfiguration here) lets monitoring page the right person.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from demeter_storage.domain.errors import (
    ConfigurationError,
    ImageAlreadyExists,
    IntegrityError,
    ObjectChanged,
    ObjectExists,
    ObjectNotFound,
    StorageError,
    StorageUnavailable,
    UploadAlreadyCompleted,
    ValidationError,
)
from demeter_storage.fastapi.models import Problem
from demeter_storage.service.ownership import LostOwnership

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "Denied",
    "ProblemResponse",
    "TooLarge",
    "install_exception_handlers",
    "problem_for",
    "problem_responses",
]

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE: Final = "application/problem+json"


class ProblemResponse(JSONResponse):
    """A JSON response served as ``application/problem+json``."""

    media_type = PROBLEM_MEDIA_TYPE


class Denied(Exception):
    """The authorizer refused the request (403); nothing was changed."""


class TooLarge(Exception):
    """The request body is larger than the service accepts (413); none of it was stored."""


def _status(exc: BaseException) -> int:
    """The HTTP status of ``exc`` (see the module's table)."""
    table: Sequence[tuple[type[BaseException] | tuple[type[BaseException], ...], int]] = (
        (Denied, 403),
        (TooLarge, 413),
        ((ImageAlreadyExists, UploadAlreadyCompleted, ObjectExists, ObjectChanged), 409),
        (LostOwnership, 409),
        (ValidationError, 422),
        (ObjectNotFound, 404),
        (StorageUnavailable, 503),
        (IntegrityError, 502),
        (ConfigurationError, 500),
    )
    for kinds, status in table:
        if isinstance(exc, kinds):
            return status
    return 500


def problem_for(exc: BaseException, instance: str | None = None) -> ProblemResponse:
    """The problem response of ``exc``, with its extra members and headers."""
    status = _status(exc)
    extra: dict[str, Any] = {}
    headers: dict[str, str] = {}
    detail = str(exc) or HTTPStatus(status).phrase
    if isinstance(exc, ImageAlreadyExists) and exc.existing_image_id is not None:
        extra["existing_image_id"] = str(exc.existing_image_id)
    if isinstance(exc, UploadAlreadyCompleted):
        extra["image_id"] = str(exc.image_id)
    if isinstance(exc, StorageUnavailable) and exc.retry_after is not None:
        seconds = max(1, math.ceil(exc.retry_after))
        extra["retry_after"] = seconds
        headers["Retry-After"] = str(seconds)
    if status == 500 and not isinstance(exc, ConfigurationError):
        detail = "internal error; the server's log has the details"
    return problem(status, detail, instance, headers=headers, **extra)


def problem(
    status: int,
    detail: str,
    instance: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> ProblemResponse:
    """A problem response with ``status`` and ``detail``."""
    body = Problem(
        title=HTTPStatus(status).phrase, status=status, detail=detail, instance=instance, **extra
    )
    return ProblemResponse(
        body.model_dump(mode="json", exclude_none=True), status_code=status, headers=headers
    )


def _field_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Each refused field as ``{"loc": [...], "msg": "..."}`` (inputs are not echoed)."""
    return [
        {"loc": [str(part) for part in error.get("loc", ())], "msg": str(error.get("msg", ""))}
        for error in errors
    ]


async def _storage_error(request: Request, exc: Exception) -> ProblemResponse:
    response = problem_for(exc, request.url.path)
    if response.status_code >= 500:
        logger.warning(
            "%s %s failed: %s: %s",
            request.method,
            request.url.path,
            type(exc).__name__,
            exc,
            exc_info=not isinstance(exc, StorageError),
        )
    return response


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code < 400:  # a redirect or a 304 raised as an exception: no problem body
        return Response(status_code=exc.status_code, headers=exc.headers)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return problem(exc.status_code, detail, request.url.path, headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _field_errors(exc.errors())
    detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors) or "invalid request"
    return problem(422, detail, request.url.path, errors=errors)


def install_exception_handlers(app: FastAPI) -> None:
    """Answer every error of the package, refused fields and HTTP errors as problem+json.

    Registers handlers for :class:`~demeter_storage.StorageError` (and so every
    typed error), :class:`Denied`, :class:`TooLarge`, FastAPI's
    ``RequestValidationError`` (422, listing the refused fields) and
    Starlette's ``HTTPException`` (a body FastAPI cannot parse is its 400; the
    host's own 401s keep their status and headers, ``WWW-Authenticate`` say).
    """
    app.add_exception_handler(StorageError, _storage_error)
    app.add_exception_handler(Denied, _storage_error)
    app.add_exception_handler(TooLarge, _storage_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_exception)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for ``statuses``, each a problem+json body."""
    schema = Problem.model_json_schema()
    described = {
        400: "The body cannot be parsed (JSON that is not JSON, say).",
        403: "The authorizer refused the request; nothing was changed.",
        404: "No such image (or it is being uploaded or deleted).",
        409: "The key is taken, or the upload is completed already.",
        413: "The body is larger than the service accepts; nothing was stored.",
        422: "A refused field or file; nothing was stored.",
        502: "The stored bytes differ from their checksum (restore the object).",
        503: "The store or database is unavailable; retry after `Retry-After` seconds.",
    }
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {
            "description": described.get(status, HTTPStatus(status).phrase),
            "content": {PROBLEM_MEDIA_TYPE: {"schema": schema}},
        }
        if status == 503:
            entry["headers"] = {
                "Retry-After": {
                    "description": "Seconds until the circuit breaker lets a request through.",
                    "schema": {"type": "integer"},
                }
            }
        responses[status] = entry
    return responses
