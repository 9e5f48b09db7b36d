"""The signed-URL app on a real uvicorn, in a thread, on loopback.

Importing this module skips the importing test module when the web extra
(uvicorn) is not installed.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path

import pytest

from demeter_storage import InMemoryImageStore, LocalImageStore
from demeter_storage.testing import ManualClock
from demeter_storage.web.app import SignedUrlApp

uvicorn = pytest.importorskip("uvicorn", reason="the web extra (uvicorn) is not installed")

PHOTO = bytes(range(256)) * 40  # 10,240 bytes


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """uvicorn in a thread, serving one local store and one in-memory store."""

    def __init__(self, root: Path) -> None:
        self.port = _free_port()
        base = f"http://127.0.0.1:{self.port}"
        self.clock = ManualClock()
        self.store = LocalImageStore(
            root / "photos", base_url=f"{base}/photos", clock=self.clock.now, durable=False
        )
        self.memory = InMemoryImageStore("scratch", base_url=f"{base}/scratch")
        app = SignedUrlApp({"photos": self.store, "scratch": self.memory})
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def run(self, coroutine: object) -> object:
        return asyncio.run(coroutine)  # type: ignore[arg-type]


def presign(server: Server, key: str = "s1/leaf photo é.jpg", **kwargs: object) -> str:
    """A signed URL of ``key`` on the server's local store (ten minutes unless told)."""
    signed = server.run(
        server.store.presign(key, expires_in=kwargs.pop("expires_in", 600), **kwargs)
    )  # type: ignore[arg-type]
    return signed.url  # type: ignore[attr-defined, no-any-return]
