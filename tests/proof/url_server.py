"""The signed-URL app behind httpx's ASGI transport, keeping what it received: the fuzzed server.

Two stores, a local one and an in-memory one; ``fill`` puts ``KEYS`` in both.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import httpx

from demeter_storage.adapters.local.store import LocalImageStore
from demeter_storage.adapters.memory.store import InMemoryImageStore
from demeter_storage.ports import ImageStore
from demeter_storage.testing import ManualClock
from demeter_storage.web.app import SignedUrlApp
from tests.proof.strategies import JPEG

KEYS = ["s1/a.jpg", "s1/b.jpg", "s2/\u00e9 \u00fc+%&=?#.jpg"]
CONTENT = {key: JPEG + key.encode() for key in KEYS}
BASE = "http://testserver"


class Recorder:
    """The app, keeping the scope of the last request (what the server really received)."""

    def __init__(self, app: SignedUrlApp) -> None:
        self.app = app
        self.scope: dict[str, Any] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.scope = dict(scope)
        await self.app(scope, receive, send)


class Server:
    """Both stores behind the recording app, and an httpx client to it."""

    def __init__(self, root: Path) -> None:
        self.clock = ManualClock()
        self.stores: dict[str, ImageStore] = {
            "photos": LocalImageStore(
                root / "photos", base_url=f"{BASE}/photos", clock=self.clock.now, durable=False
            ),
            "viz": InMemoryImageStore("viz", base_url=f"{BASE}/viz", clock=self.clock.now),
        }
        self.app = Recorder(SignedUrlApp(self.stores))
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(self.app), base_url=BASE)

    async def fill(self) -> None:
        for store in self.stores.values():
            for key in KEYS:
                await store.put(key, CONTENT[key], content_type="image/jpeg")

    async def request(self, method: str, url: str) -> httpx.Response:
        body = b"PUT BY A TAMPERED URL" if method == "PUT" else None
        # A PUT carries the headers its URL pins (a client following the URL's rules).
        headers = {"Content-Type": "image/jpeg", "If-None-Match": "*"} if body else {}
        self.app.scope = {}
        return await self.client.request(method, url, content=body, headers=headers)

    def received(self) -> tuple[str, str, dict[str, list[str]]]:
        """Bucket, key and query parameters as the app received them (decoded here)."""
        raw = self.app.scope.get("raw_path") or self.app.scope["path"].encode()
        path = raw.decode("latin-1").split("?", 1)[0]
        bucket, _, quoted = path.lstrip("/").partition("/")
        key = unicodedata.normalize("NFC", unquote(quoted, errors="strict"))
        query = self.app.scope.get("query_string", b"").decode("latin-1")
        return unquote(bucket), key, parse_qs(query, keep_blank_values=True)
