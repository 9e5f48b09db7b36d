"""A process that uploads and deletes until it is SIGKILLed at a named step.

Run by ``tests/proof/test_crash.py``: ``python -m tests.proof.crash_worker
CONFIG_JSON STEP``. It first stores two photos (``keep`` and ``victim``) and
prints ``READY {...}``; then, with the crash hook armed, it streams a third
photo (``new``) and deletes ``victim``. On reaching ``STEP`` (a service
checkpoint, or ``mid_put`` half-way through the streamed bytes) it prints
``AT STEP`` and blocks until the test kills it. ``DONE`` means the step was
never reached.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import random
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image

from demeter_storage.adapters.local.store import LocalImageStore
from demeter_storage.adapters.pillow.thumbnails import PillowThumbnailMaker
from demeter_storage.adapters.s3.config import S3Config
from demeter_storage.adapters.s3.store import S3ImageStore
from demeter_storage.adapters.sql.repository import (
    SqlAlchemyMetadataRepository,
    create_engine,
)
from demeter_storage.adapters.sql.schema import create_schema
from demeter_storage.domain.objects import utc_now
from demeter_storage.domain.secrets import Secret
from demeter_storage.ports import ImageStore
from demeter_storage.service.image_service import Checkpoint, ImageService
from demeter_storage.service.schemas import UploadRequest
from tests.service.conftest import jpeg

BUCKETS = ("crash-originals", "crash-viz")
SERVICE_STEPS = (
    "record_written",
    "object_written",
    "thumbnail_written",
    "marked_ready",
    "marked_deleting",
    "objects_deleted",
    "rows_removed",
)
STEPS = (*SERVICE_STEPS[:1], "mid_put", *SERVICE_STEPS[1:])


async def open_service(
    config: dict[str, Any],
    *,
    clock: Callable[[], datetime] = utc_now,
    checkpoint: Checkpoint | None = None,
) -> ImageService:
    """The service the worker ran on, from the test's ``config``."""
    stores: list[ImageStore]
    if config["kind"] == "local":
        root = Path(config["root"])
        stores = [LocalImageStore(root / b, name=b, clock=clock) for b in BUCKETS]
    else:
        s3 = S3Config(
            endpoint_url=config["endpoint"],
            region="us-east-1",
            addressing_style="path",
            access_key_id=config["access_key"],
            secret_access_key=Secret(config["secret_key"]),
        )
        stores = [S3ImageStore(f"{b}-{config['suffix']}", config=s3, clock=clock) for b in BUCKETS]
    connect_args = {}
    if config.get("schema"):
        connect_args = {"server_settings": {"search_path": config["schema"]}}
    engine = create_engine(config["database_url"], connect_args=connect_args)
    await create_schema(engine)
    return ImageService(
        originals=stores[0],
        visualizations=stores[1],
        metadata=SqlAlchemyMetadataRepository(engine, owns_engine=True),
        thumbnails=PillowThumbnailMaker(),
        clock=clock,
        checkpoint=checkpoint,
    )


def photos() -> dict[str, bytes]:
    """The three photos, the same in the worker and the test."""
    return {
        "keep.jpg": jpeg(color=(10, 200, 10)),
        "victim.jpg": jpeg(color=(200, 10, 10)),
        "new.jpg": noisy_jpeg(),
    }


def noisy_jpeg(side: int = 300) -> bytes:
    """A JPEG of seeded noise: large for its size, and the same in both processes."""
    output = io.BytesIO()
    pixels = random.Random(7).randbytes(side * side * 3)
    Image.frombytes("RGB", (side, side), pixels).save(output, "JPEG")
    return output.getvalue()


class Hook:
    """Blocks the whole process at the armed step, after saying so."""

    def __init__(self, step: str) -> None:
        self.step = step
        self.armed = False

    async def __call__(self, name: str) -> None:
        if self.armed and name == self.step:
            print(f"AT {name}", flush=True)
            time.sleep(600)  # noqa: ASYNC251 - blocking on purpose: nothing else may run


async def streamed(data: bytes, hook: Hook) -> AsyncIterator[bytes]:
    """``data`` in chunks, calling the hook's ``mid_put`` half-way through."""
    piece = max(len(data) // 8, 1)
    for start in range(0, len(data), piece):
        if start >= len(data) // 2 > start - piece:
            await hook("mid_put")
        yield data[start : start + piece]


async def main(config: dict[str, Any], step: str) -> None:
    hook = Hook(step)
    service = await open_service(config, checkpoint=hook)
    data = photos()
    ids = {}
    for name in ("keep.jpg", "victim.jpg"):
        image = await service.upload_original(data[name], "s", UploadRequest(name, "image/jpeg"))
        ids[name] = str(image.image_id)
    print("READY " + json.dumps(ids), flush=True)
    hook.armed = True
    await service.upload_original(
        streamed(data["new.jpg"], hook), "s", UploadRequest("new.jpg", "image/jpeg")
    )
    await service.delete_image(ids["victim.jpg"])
    print("DONE " + hashlib.sha256(data["new.jpg"]).hexdigest(), flush=True)
    await service.aclose()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1]), sys.argv[2]))
