"""The image service on three stacks: in memory, local + SQLite, S3 (SeaweedFS) + PostgreSQL."""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from demeter_storage.adapters.local.store import LocalImageStore
from demeter_storage.adapters.memory.metadata import InMemoryMetadataRepository
from demeter_storage.adapters.memory.store import InMemoryImageStore
from demeter_storage.adapters.pillow.thumbnails import PillowThumbnailMaker
from demeter_storage.adapters.resilience.store import ResilientImageStore
from demeter_storage.adapters.s3.store import S3ImageStore
from demeter_storage.adapters.sql.repository import (
    SqlAlchemyMetadataRepository,
    create_engine,
)
from demeter_storage.adapters.sql.schema import create_schema
from demeter_storage.ports import ImageStore, MetadataRepository
from demeter_storage.service.image_service import Checkpoint, ImageService, ServiceConfig
from demeter_storage.testing import ManualClock, no_sleep

STACKS = ["memory", "local-sqlite", "s3-postgres"]


def jpeg(width: int = 640, height: int = 480, color: tuple[int, int, int] = (40, 140, 50)) -> bytes:
    output = io.BytesIO()
    Image.new("RGB", (width, height), color).save(output, "JPEG")
    return output.getvalue()


def noisy_jpeg(side: int = 200) -> bytes:
    """A JPEG that does not compress well (random pixels)."""
    output = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(output, "JPEG")
    return output.getvalue()


def png(width: int = 32, height: int = 32) -> bytes:
    output = io.BytesIO()
    Image.new("RGBA", (width, height), (200, 0, 0, 128)).save(output, "PNG")
    return output.getvalue()


class Stack:
    """One service and direct access to what is under it."""

    def __init__(
        self,
        service: ImageService,
        originals: ImageStore,
        visualizations: ImageStore,
        metadata: MetadataRepository,
        clock: ManualClock,
    ) -> None:
        self.service = service
        self.originals = originals
        self.visualizations = visualizations
        self.metadata = metadata
        self.clock = clock

    async def objects(self) -> dict[str, list[str]]:
        return {
            store.name: [info.key async for info in store.list()]
            for store in (self.originals, self.visualizations)
        }

    async def rows(self) -> list[Any]:
        return [record async for record in self.metadata.records()]

    async def is_empty(self) -> bool:
        objects = await self.objects()
        return not any(objects.values()) and not await self.rows()


StackFactory = Callable[..., Awaitable[Stack]]


@pytest.fixture(params=STACKS)
def stack_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def s3_and_postgres(stack_name: str, request: pytest.FixtureRequest) -> tuple[Any, Any] | None:
    """The SeaweedFS server and a PostgreSQL engine, for the S3 stack only.

    Resolved here, outside any running loop: the engine fixture is async.
    """
    if stack_name != "s3-postgres":
        return None
    return request.getfixturevalue("seaweedfs_server"), request.getfixturevalue("postgres_engine")


@pytest.fixture
async def make_stack(
    stack_name: str, s3_and_postgres: tuple[Any, Any] | None, tmp_path: Path
) -> AsyncIterator[StackFactory]:
    built: list[Stack] = []

    async def factory(
        *,
        thumbnails: bool = True,
        wrap: Callable[[ImageStore], ImageStore] | None = None,
        checkpoint: Checkpoint | None = None,
        **config: Any,
    ) -> Stack:
        clock = ManualClock()
        suffix = uuid.uuid4().hex[:10]
        if stack_name == "memory":
            originals: ImageStore = InMemoryImageStore("demeter-photos-original", clock=clock.now)
            visualizations: ImageStore = InMemoryImageStore("demeter-photos-viz", clock=clock.now)
            metadata: MetadataRepository = InMemoryMetadataRepository()
        elif stack_name == "local-sqlite":
            root = tmp_path / f"root-{suffix}"
            originals = LocalImageStore(
                root / "originals", name="demeter-photos-original", clock=clock.now
            )
            visualizations = LocalImageStore(
                root / "viz", name="demeter-photos-viz", clock=clock.now
            )
            engine = create_engine(f"sqlite+aiosqlite:///{root}.sqlite3")
            await create_schema(engine)
            metadata = SqlAlchemyMetadataRepository(engine, owns_engine=True)
        else:
            assert s3_and_postgres is not None
            server, engine = s3_and_postgres
            s3 = [
                S3ImageStore(f"{prefix}-{suffix}", config=server.s3_config(), clock=clock.now)
                for prefix in ("orig", "viz")
            ]
            for store in s3:
                await store.ensure_bucket()
            originals = ResilientImageStore(s3[0], sleep=no_sleep, circuit_name=f"o-{suffix}")
            visualizations = ResilientImageStore(s3[1], sleep=no_sleep, circuit_name=f"v-{suffix}")
            metadata = SqlAlchemyMetadataRepository(engine)
        if wrap is not None:
            originals, visualizations = wrap(originals), wrap(visualizations)
        service = ImageService(
            originals=originals,
            visualizations=visualizations,
            metadata=metadata,
            config=ServiceConfig(**config),
            thumbnails=PillowThumbnailMaker() if thumbnails else None,
            clock=clock.now,
            checkpoint=checkpoint,
            sleep=no_sleep,
        )
        stack = Stack(service, originals, visualizations, metadata, clock)
        built.append(stack)
        return stack

    yield factory
    for stack in built:
        await stack.service.aclose()


@pytest.fixture
async def stack(make_stack: StackFactory) -> Stack:
    return await make_stack()
