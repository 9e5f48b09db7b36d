"""A real headless Chromium submits an HTML form made from a DirectUpload.

The page builds the form from the upload's URL and fields, puts the photo in
its file input (as a user picking a file would) and submits it; the test then
completes the upload through the service, which checks what arrived. Once on
the local store served by the package's ASGI app, once on SeaweedFS.
"""

from __future__ import annotations

import base64
import hashlib
import html
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from demeter_storage import DirectUpload
from demeter_storage.adapters.memory.metadata import InMemoryMetadataRepository
from demeter_storage.adapters.s3.store import S3ImageStore
from demeter_storage.domain.objects import utc_now
from demeter_storage.ports import ImageStore
from demeter_storage.service.image_service import ImageService
from demeter_storage.testing import SeaweedFSServer
from tests.support.browser import Chromium, elements_by_id, serve_pages
from tests.web.live_server import Server

SAMPLE = Path(__file__).parents[2] / "docs" / "assets" / "sample-leaf.jpg"


def upload_page(upload: DirectUpload, photo: bytes) -> str:
    """An HTML form from ``upload``, filled in and submitted by its own script."""
    hidden = "".join(
        f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
        for name, value in upload.fields.items()
    )
    encoded = base64.b64encode(photo).decode()
    return f"""<!doctype html><title>direct upload</title>
<iframe name="result" id="result"></iframe>
<form id="upload" action="{html.escape(upload.url)}" method="post"
      enctype="multipart/form-data" target="result">
  {hidden}<input type="file" name="file" id="file">
</form>
<script>
  const bytes = Uint8Array.from(atob("{encoded}"), c => c.charCodeAt(0));
  const picked = new DataTransfer();
  picked.items.add(new File([bytes], "sample-leaf.jpg", {{type: "image/jpeg"}}));
  const input = document.getElementById("file");
  input.files = picked.files;
  const form = document.getElementById("upload");
  form.dataset.files = input.files.length;
  form.submit();
  form.dataset.submitted = "yes";
</script>"""


@pytest.fixture
def local_server(tmp_path: Path) -> Iterator[Server]:
    with Server(tmp_path) as running:
        yield running


def submit_in_chromium(chromium: Chromium, upload: DirectUpload, photo: bytes) -> None:
    with serve_pages({"/upload.html": upload_page(upload, photo)}) as base:
        dom = chromium.dump_dom(f"{base}/upload.html", budget_ms=10_000)
    form = elements_by_id(dom)["upload"]
    assert form["data-files"] == "1", dom
    assert form["data-submitted"] == "yes", dom


async def upload_through_the_browser(
    chromium: Chromium,
    originals: ImageStore,
    visualizations: ImageStore,
    clock: Callable[[], datetime] = utc_now,
) -> None:
    service = ImageService(
        originals=originals,
        visualizations=visualizations,
        metadata=InMemoryMetadataRepository(),
        clock=clock,
    )
    photo = SAMPLE.read_bytes()
    upload = await service.begin_direct_upload("field-7", "leaf.jpg", "image/jpeg", len(photo))
    submit_in_chromium(chromium, upload, photo)
    image = await service.complete_direct_upload(upload.image_id)
    assert image.sha256 == hashlib.sha256(photo).hexdigest()
    assert await service.download_original("field-7/leaf.jpg") == photo
    assert (await service.audit()).consistent


@pytest.mark.chromium
async def test_chromium_uploads_a_form_to_the_local_store(
    local_server: Server, chromium: Chromium
) -> None:
    await upload_through_the_browser(
        chromium, local_server.store, local_server.memory, local_server.clock.now
    )


@pytest.fixture
async def seaweedfs_stores(
    seaweedfs_server: SeaweedFSServer,
) -> AsyncIterator[tuple[S3ImageStore, S3ImageStore]]:
    suffix = uuid.uuid4().hex[:8]
    stores = tuple(
        S3ImageStore(f"{name}-{suffix}", config=seaweedfs_server.s3_config())
        for name in ("browser-orig", "browser-viz")
    )
    for store in stores:
        await store.ensure_bucket()
    yield stores  # type: ignore[misc]
    for store in stores:
        await store.aclose()


@pytest.mark.chromium
@pytest.mark.seaweedfs
async def test_chromium_uploads_a_form_to_seaweedfs(
    seaweedfs_stores: tuple[S3ImageStore, S3ImageStore], chromium: Chromium
) -> None:
    await upload_through_the_browser(chromium, *seaweedfs_stores)
