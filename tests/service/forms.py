"""Posting a direct upload's form as a browser would, to wherever its stack's store takes it.

The memory and local stacks' forms go to the package's ASGI app in process; the
S3 stack's to SeaweedFS itself.
"""

from __future__ import annotations

import httpx

from demeter_storage import DirectUpload
from demeter_storage.adapters.resilience.store import ResilientImageStore
from demeter_storage.web.app import SignedUrlApp
from tests.service.conftest import Stack


async def post_form(
    stack: Stack,
    upload: DirectUpload,
    body: bytes,
    *,
    fields: dict[str, str] | None = None,
    file_type: str = "image/jpeg",
) -> httpx.Response:
    """Send the upload form as a browser would: the fields, then the file."""
    form = dict(upload.fields) if fields is None else fields
    files = {"file": ("photo.jpg", body, file_type)}
    store = stack.originals
    if isinstance(store, ResilientImageStore):  # S3: the server itself
        async with httpx.AsyncClient(timeout=30) as client:
            return await client.post(upload.url, data=form, files=files)
    # The app serves stores by bucket name, wherever their URLs say it is mounted
    # (the in-memory store's say memory://).
    transport = httpx.ASGITransport(app=SignedUrlApp({store.name: store}))
    async with httpx.AsyncClient(transport=transport, timeout=30) as client:
        return await client.post(f"http://testserver/{store.name}", data=form, files=files)
