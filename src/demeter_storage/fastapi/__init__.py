"""FastAPI host apps: a ready router, its pydantic models, problem+json errors, a lifespan.

Needs the ``fastapi`` extra (``pip install 'demeter-storage[fastapi]'``)::

    from demeter_storage.fastapi import (
        get_image_service, images_router, install_exception_handlers, lifespan
    )

    app = FastAPI(lifespan=lifespan)
    install_exception_handlers(app)
    app.include_router(images_router(authenticate=current_user, authorize=may), prefix="/photos")

Tests swap the in-memory service in with one line:
``app.dependency_overrides[get_image_service] = lambda: memory_image_service``.
See ``docs/fastapi.md``.
"""

from demeter_storage.fastapi.authorization import Action, Authorizer, allow_all, anonymous
from demeter_storage.fastapi.lifespan import get_image_service, lifespan
from demeter_storage.fastapi.models import (
    DirectUploadRequest,
    DirectUploadResponse,
    ImagePageResponse,
    PresignedUrlRequest,
    PresignedUrlResponse,
    Problem,
    S3ImageResponse,
    S3ImageUploadRequest,
    VisualizationUploadRequest,
)
from demeter_storage.fastapi.problems import (
    Denied,
    TooLarge,
    install_exception_handlers,
    problem_for,
)
from demeter_storage.fastapi.router import images_router

__all__ = [
    "Action",
    "Authorizer",
    "Denied",
    "DirectUploadRequest",
    "DirectUploadResponse",
    "ImagePageResponse",
    "PresignedUrlRequest",
    "PresignedUrlResponse",
    "Problem",
    "S3ImageResponse",
    "S3ImageUploadRequest",
    "TooLarge",
    "VisualizationUploadRequest",
    "allow_all",
    "anonymous",
    "get_image_service",
    "images_router",
    "install_exception_handlers",
    "lifespan",
    "problem_for",
]
