"""A FastAPI app on demeter-storage: the ready router behind the app's own authentication.

Run it: ``pip install 'demeter-storage[fastapi,web]'`` then ``uvicorn fastapi_app:app``
(from ``docs/examples``). The service is built from the environment's settings
at start-up; tests swap in the in-memory one with
``app.dependency_overrides[get_image_service] = lambda: memory_image_service``
(see ``tests/fastapi/test_example.py`` and ``docs/fastapi.md``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Header, HTTPException

from demeter_storage.fastapi import (
    Action,
    get_image_service,
    images_router,
    install_exception_handlers,
    lifespan,
)

__all__ = ["app", "current_user", "get_image_service", "may"]

WORKERS = {"token-ana": "ana", "token-ben": "ben"}
"""Bearer tokens and their field workers (a real app asks its identity provider)."""


def current_user(authorization: Annotated[str | None, Header()] = None) -> str:
    """The field worker named by the bearer token; 401 without one."""
    user = WORKERS.get((authorization or "").removeprefix("Bearer "))
    if user is None:
        raise HTTPException(401, "send Authorization: Bearer <token>")
    return user


def may(user: str, action: Action, session_id: str) -> bool:
    """A field worker touches only their own sessions, named ``{user}-...``."""
    return session_id.startswith(f"{user}-")


app = FastAPI(title="Demeter photos", lifespan=lifespan)
install_exception_handlers(app)
app.include_router(images_router(authenticate=current_user, authorize=may), prefix="/photos")
