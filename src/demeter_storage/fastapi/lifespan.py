"""The service's life in a FastAPI app: built at start-up, closed at shutdown, injected.

``FastAPI(lifespan=lifespan)`` builds the service from the environment's
settings (``functools.partial(lifespan, settings=...)`` for settings made in
code); the routes reach it through the :func:`get_image_service` dependency,
which tests override in one line::

    app.dependency_overrides[get_image_service] = lambda: memory_image_service
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Final

from fastapi import FastAPI, Request

from demeter_storage.bootstrap import build_service
from demeter_storage.domain.errors import ConfigurationError
from demeter_storage.service.image_service import ImageService
from demeter_storage.settings import StorageSettings

__all__ = ["STATE_ATTRIBUTE", "get_image_service", "lifespan"]

STATE_ATTRIBUTE: Final = "image_service"
"""Where :func:`lifespan` keeps the service: ``app.state.image_service``."""


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI, settings: StorageSettings | None = None) -> AsyncIterator[None]:
    """Build the image service at start-up (``app.state.image_service``); close it at shutdown.

    Args:
        app: the app (FastAPI passes it).
        settings: what to build; None reads ``StorageSettings.from_env()``.

    Use it as the app's lifespan, or enter it from your own
    (``async with lifespan(app): yield``).

    Raises:
        ConfigurationError: invalid settings (the app does not start).
    """
    service = await build_service(settings)
    setattr(app.state, STATE_ATTRIBUTE, service)
    try:
        yield
    finally:
        delattr(app.state, STATE_ATTRIBUTE)
        await service.aclose()


def get_image_service(request: Request) -> ImageService:
    """The FastAPI dependency that gives the routes the service :func:`lifespan` built.

    Raises:
        ConfigurationError: the app has no service (no lifespan, and no override).
    """
    service = getattr(request.app.state, STATE_ATTRIBUTE, None)
    if not isinstance(service, ImageService):
        raise ConfigurationError(
            "the app has no image service: pass lifespan=demeter_storage.fastapi.lifespan to "
            "FastAPI(), or override get_image_service (app.dependency_overrides)"
        )
    return service
