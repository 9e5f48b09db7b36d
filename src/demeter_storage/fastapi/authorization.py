"""Who may do what: the host's authentication dependency and authorizer, asked by every route."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeAlias

from fastapi import Depends

from demeter_storage.fastapi.lifespan import get_image_service
from demeter_storage.fastapi.problems import Denied
from demeter_storage.service.image_service import ImageService
from demeter_storage.service.schemas import ImageResponse

Action: TypeAlias = Literal["upload_original", "upload_visualization", "read", "delete"]
"""What a request wants to do in a session; the authorizer's second argument.

* ``upload_original``: upload an original, begin or complete a direct upload;
* ``upload_visualization``: upload a visualization;
* ``read``: describe, list, download an image, or presign its URL;
* ``delete``: delete an image (with its thumbnail and visualizations).
"""

Authorizer: TypeAlias = Callable[[Any, Action, str], bool | Awaitable[bool]]
"""``(user, action, session_id) -> bool`` (or an awaitable of it): may ``user`` do it?"""


def allow_all(user: Any, action: Action, session_id: str) -> bool:
    """An authorizer that allows everything (tests, or an app behind its own gateway)."""
    return True


def anonymous() -> None:
    """An authentication dependency that knows nobody: the authorizer gets ``None``."""


async def _allow(authorize: Authorizer, user: Any, action: Action, session_id: str) -> None:
    verdict = authorize(user, action, session_id)
    if inspect.isawaitable(verdict):
        verdict = await verdict
    if verdict is not True:
        raise Denied(f"you may not {action.replace('_', ' ')} in session {session_id!r}")


class Routing:
    """What every route needs: the authorizer, the user's dependency, the operation ids."""

    def __init__(self, authorize: Authorizer, user: Any, operation_id_prefix: str) -> None:
        self.authorize = authorize
        self.user = user
        self.service = Depends(get_image_service)
        self.prefix = operation_id_prefix

    def operation(self, name: str) -> str:
        """The operation id of route ``name``."""
        return f"{self.prefix}{name}"

    async def allow(self, user: Any, action: Action, session_id: str) -> None:
        """Return if ``user`` may do ``action`` in ``session_id``; raise ``Denied`` (403) if not."""
        await _allow(self.authorize, user, action, session_id)

    async def readable(
        self, service: ImageService, user: Any, image_id: uuid.UUID
    ) -> ImageResponse:
        """The image ``image_id``, if ``user`` may read its session."""
        image = await service.get_image(image_id)
        await self.allow(user, "read", image.session_id)
        return image
