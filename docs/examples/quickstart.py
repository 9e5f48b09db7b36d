"""The main job on the embedded default: the image service on local files + SQLite.

Run it from the repository root: ``python docs/examples/quickstart.py``.
Objects and the metadata database go under ``./demeter-data``.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from demeter_storage.bootstrap import build_service
from demeter_storage.service.schemas import UploadRequest

SAMPLE = Path(__file__).resolve().parent.parent / "assets" / "sample-leaf.jpg"


async def main() -> None:
    """Upload a photo, presign, download, list, delete, then audit."""
    service = await build_service()  # settings from the environment; defaults: local + SQLite
    try:
        with SAMPLE.open("rb") as photo:
            image = await service.upload_original(
                photo,
                "demo",
                UploadRequest(SAMPLE.name, "image/jpeg", metadata={"field": "a7"}),
            )
        print(f"uploaded   {image.s3_key} ({image.size} bytes) as image {image.image_id}")
        print(f"thumbnail  {image.thumbnail_key}")

        url = await service.generate_presigned_url(image.s3_key, expiry_hours=1)
        print(f"presigned  {url}")

        data = await service.download_original(image.s3_key)
        assert hashlib.sha256(data).hexdigest() == image.sha256
        print(f"downloaded {len(data)} bytes, SHA-256 verified")

        page = await service.list_session_images("demo")
        print(f"session    {[item.s3_key for item in page.items]}")

        print(f"deleted    {await service.delete_image(image.image_id)}")
        audit = await service.audit()
        print(f"audit      consistent={audit.consistent}")
    finally:
        await service.aclose()


if __name__ == "__main__":
    asyncio.run(main())
