"""Replayed and concurrent forms, retries and PUT URLs never change a confirmed image.

Each example runs a random sequence of direct uploads (begin, post, complete,
a form posted again, posts and completes at the same time), retried uploads
racing each other, and presigned PUTs at images' keys, against one service on
the in-memory and local stores with the package's signed-URL server. The
oracle: an image's bytes, once confirmed, are the bytes its record describes,
for ever after; and once time has passed, ``reconcile`` and the orphan sweep
leave an audit with nothing to report.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from demeter_storage.adapters.local.store import LocalImageStore
from demeter_storage.adapters.memory.metadata import InMemoryMetadataRepository
from demeter_storage.adapters.memory.store import InMemoryImageStore
from demeter_storage.domain.errors import StorageError
from demeter_storage.ports import ImageStore
from demeter_storage.service.image_service import ImageService, ServiceConfig
from demeter_storage.service.schemas import DirectUpload, UploadRequest
from demeter_storage.testing import ManualClock, no_sleep
from demeter_storage.web.app import SignedUrlApp
from tests.proof.strategies import JPEG, fuzz_settings

SIZE = 96
NAMES = ("a.jpg", "b.jpg")


def _photo(variant: int) -> bytes:
    """A JPEG-headed body of SIZE bytes, one per variant."""
    return (JPEG + bytes([variant]) * SIZE)[:SIZE]


class World:
    """One service, its server, and what the test knows was confirmed."""

    def __init__(self, store_kind: str, root: Path) -> None:
        self.clock = ManualClock()
        base = "http://testserver/photos"
        originals: ImageStore = (
            InMemoryImageStore("photos", base_url=base, clock=self.clock.now)
            if store_kind == "memory"
            else LocalImageStore(
                root, name="photos", base_url=base, clock=self.clock.now, durable=False
            )
        )
        self.originals = originals
        self.service = ImageService(
            originals=originals,
            visualizations=InMemoryImageStore("viz", clock=self.clock.now),
            metadata=InMemoryMetadataRepository(),
            config=ServiceConfig(),
            clock=self.clock.now,
            sleep=no_sleep,
        )
        transport = httpx.ASGITransport(app=SignedUrlApp({originals.name: originals}))
        self.client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        self.uploads: list[DirectUpload] = []
        self.confirmed: dict[uuid.UUID, tuple[str, bytes]] = {}

    async def post(self, upload: DirectUpload, body: bytes) -> int:
        files = {"file": ("photo.jpg", body, "image/jpeg")}
        response = await self.client.post(
            f"/{self.originals.name}", data=dict(upload.fields), files=files
        )
        return response.status_code

    async def act(self, action: tuple[Any, ...]) -> None:
        kind = action[0]
        if (kind in ("post", "complete", "race") and not self.uploads) or (
            kind == "put" and not self.confirmed
        ):
            return  # nothing to act on yet
        try:
            if kind == "begin":
                self.uploads.append(
                    await self.service.begin_direct_upload("s", action[1], "image/jpeg", SIZE)
                )
            elif kind == "post":
                await self.post(self.uploads[action[1] % len(self.uploads)], _photo(action[2]))
            elif kind == "complete":
                await self._complete(self.uploads[action[1] % len(self.uploads)])
            elif kind == "race":
                upload = self.uploads[action[1] % len(self.uploads)]
                await asyncio.gather(
                    self.post(upload, _photo(action[2])),
                    self._complete(upload),
                    self.post(upload, _photo(action[3])),
                    return_exceptions=True,
                )
            elif kind == "retries":
                request = UploadRequest(action[1], "image/jpeg")
                results = await asyncio.gather(
                    *(self.service.upload_original(_photo(v), "s", request) for v in action[2]),
                    return_exceptions=True,
                )
                for result in results:
                    if not isinstance(result, BaseException):
                        self.confirmed[result.image_id] = (result.s3_key, b"")
            elif kind == "put":
                keys = sorted(key for key, _ in self.confirmed.values())
                await self._put_at(keys[action[1] % len(keys)], action[2])
            event(f"{kind}: done")
        except StorageError as exc:
            event(f"{kind}: {type(exc).__name__}")

    async def _complete(self, upload: DirectUpload) -> None:
        image = await self.service.complete_direct_upload(upload.image_id)
        self.confirmed[image.image_id] = (image.s3_key, b"")

    async def _put_at(self, key: str, variant: int) -> None:
        url = await self.originals.presign(
            key, expires_in=60, method="PUT", content_type="image/jpeg"
        )
        path = url.url.split(self.originals.name, 1)[1]
        response = await self.client.put(
            f"/{self.originals.name}{path}", content=_photo(variant), headers=dict(url.headers)
        )
        event(f"put at an image: {response.status_code}")
        assert response.status_code in (403, 412), response.status_code

    async def check(self) -> None:
        """Every confirmed image still holds the bytes it was confirmed with."""
        for image_id, (key, first_seen) in list(self.confirmed.items()):
            record = await self.service.metadata.get(image_id)
            assert record is not None, "a confirmed image vanished"
            data = await self.service.download_original(key)  # checks the recorded SHA-256
            assert hashlib.sha256(data).hexdigest() == record.sha256
            if first_seen:
                assert data == first_seen, "a confirmed image changed"
            else:
                self.confirmed[image_id] = (key, data)
        report = await self.service.audit()
        assert report.damaged_objects == ()
        assert report.missing_objects == ()


actions = st.lists(
    st.one_of(
        st.tuples(st.just("begin"), st.sampled_from(NAMES)),
        st.tuples(st.just("post"), st.integers(0, 5), st.integers(0, 3)),
        st.tuples(st.just("complete"), st.integers(0, 5)),
        st.tuples(st.just("race"), st.integers(0, 5), st.integers(0, 3), st.integers(0, 3)),
        st.tuples(
            st.just("retries"),
            st.sampled_from(NAMES),
            st.lists(st.integers(0, 3), min_size=1, max_size=3),
        ),
        st.tuples(st.just("put"), st.integers(0, 5), st.integers(0, 3)),
    ),
    min_size=1,
    max_size=12,
)


@pytest.mark.parametrize("store_kind", ["memory", "local"])
@fuzz_settings(weight=0.1)
@given(steps=actions)
def test_no_form_url_or_retry_changes_a_confirmed_image(
    loop: asyncio.Runner, tmp_path: Path, store_kind: str, steps: list[tuple[Any, ...]]
) -> None:
    async def scenario() -> None:
        world = World(store_kind, tmp_path / uuid.uuid4().hex)
        try:
            for step in steps:
                await world.act(step)
                await world.check()
            world.clock.advance(2 * 3600)
            assert (await world.service.reconcile()).clean
            await world.service.sweep_orphans(older_than=timedelta(0))
            await world.check()
            report = await world.service.audit()
            assert report.consistent, report
            assert (report.uploading, report.deleting) == (0, 0)
        finally:
            await world.client.aclose()
            await world.service.aclose()

    loop.run(scenario())
