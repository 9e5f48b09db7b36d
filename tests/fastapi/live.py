"""The router in an app on a real uvicorn, in a thread on loopback, its service from settings.

The app's own :func:`~demeter_storage.fastapi.lifespan` builds the service
inside uvicorn's event loop (so SQLite's connections live in that loop), and
closes it when the server stops.
"""

from __future__ import annotations

import functools
import socket
import threading
import time
from typing import Any

import pytest
from fastapi import FastAPI

from demeter_storage import StorageSettings
from demeter_storage.fastapi import allow_all, images_router, install_exception_handlers, lifespan

uvicorn = pytest.importorskip("uvicorn", reason="the web extra (uvicorn) is not installed")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def app_for(settings: StorageSettings, **router: Any) -> FastAPI:
    """An app mounting the router under /photos, its service built from ``settings``."""
    app = FastAPI(title="fuzzed", lifespan=functools.partial(lifespan, settings=settings))
    install_exception_handlers(app)
    app.include_router(images_router(**({"authorize": allow_all} | router)), prefix="/photos")
    return app


class LiveApp:
    """uvicorn serving ``app`` in a thread; ``url`` is its base URL."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveApp:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)
