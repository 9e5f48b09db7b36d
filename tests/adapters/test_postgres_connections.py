"""PostgreSQL connections: idle ones pinged before use, lost ones replaced, the fast path's rows."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from demeter_storage import StorageUnavailable
from demeter_storage.adapters.sqlalchemy_repository import (
    SqlAlchemyMetadataRepository,
    create_engine,
)
from demeter_storage.adapters.sqlalchemy_schema import TABLE_NAME, create_schema
from demeter_storage.domain.errors import ImageAlreadyExists
from demeter_storage.domain.records import ImageKind, ImageState
from demeter_storage.testing.metadata_contract import make_record

pytestmark = pytest.mark.postgres


@pytest.fixture
async def admin(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(postgres_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def schema(admin: AsyncEngine) -> AsyncIterator[str]:
    """A schema of its own; the repository's connections carry its name as application name."""
    name = f"demeter_conn_{uuid.uuid4().hex[:12]}"
    async with admin.begin() as connection:
        await connection.execute(sa.text(f'CREATE SCHEMA "{name}"'))
    yield name
    async with admin.begin() as connection:
        await connection.execute(sa.text(f'DROP SCHEMA "{name}" CASCADE'))


@asynccontextmanager
async def _repository(
    postgres_url: str, schema: str, ping_idle_after: float
) -> AsyncIterator[SqlAlchemyMetadataRepository]:
    """A repository on a pool of one connection, closed afterwards."""
    engine = create_engine(
        postgres_url,
        ping_idle_after=ping_idle_after,
        pool_size=1,
        max_overflow=0,
        connect_args={"server_settings": {"search_path": schema, "application_name": schema}},
    )
    await create_schema(engine)
    repository = SqlAlchemyMetadataRepository(engine, owns_engine=True)
    try:
        yield repository
    finally:
        await repository.aclose()


async def _kill_the_pooled_connection(
    repository: SqlAlchemyMetadataRepository, admin: AsyncEngine, schema: str
) -> None:
    """Use the pool's connection once (so the pool holds it), then end it server-side."""
    async with repository.engine.connect() as connection:
        await connection.execute(sa.text("SELECT 1"))
    async with admin.connect() as connection:
        killed = await connection.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = :name"
            ),
            {"name": schema},
        )
        assert len(killed.all()) == 1


async def test_an_idle_connection_killed_by_the_server_is_replaced_unnoticed(
    postgres_url: str, admin: AsyncEngine, schema: str
) -> None:
    async with _repository(postgres_url, schema, ping_idle_after=0) as repository:
        await _kill_the_pooled_connection(repository, admin, schema)
        record = make_record()
        await repository.add(record)  # the ping found it dead; a new connection served
        assert await repository.get(record.image_id) == record


async def test_a_busy_connection_lost_mid_use_fails_once_then_is_replaced(
    postgres_url: str, admin: AsyncEngine, schema: str
) -> None:
    async with _repository(postgres_url, schema, ping_idle_after=3600) as repository:
        await _kill_the_pooled_connection(repository, admin, schema)
        record = make_record()
        with pytest.raises(StorageUnavailable, match="cannot reach the database"):
            await repository.add(record)  # no ping inside the window: the insert finds out
        await repository.add(record)
        ready = await repository.mark_ready(
            record.image_id, size=3, sha256="0" * 64, thumbnail_key=None, now=record.created_at
        )
        assert ready is not None and ready.state is ImageState.READY


async def test_the_fast_path_reads_back_what_sqlalchemy_reads(
    postgres_url: str, schema: str
) -> None:
    async with _repository(postgres_url, schema, ping_idle_after=1) as repository:
        parent = make_record(key="s1/parent.jpg")
        await repository.add(parent)
        record = make_record(
            key="s1/child.png",
            kind=ImageKind.VISUALIZATION,
            parent_id=parent.image_id,
            metadata={"camera": "Pixel 9", "row": "é 7"},
            upload_expires_at=parent.created_at + timedelta(hours=1),
        )
        await repository.add(record)
        later = record.created_at + timedelta(seconds=5)
        ready = await repository.mark_ready(
            record.image_id, size=42, sha256="a" * 64, thumbnail_key="s1/t.jpg", now=later
        )
        assert ready == await repository.get(record.image_id)
        assert ready is not None
        assert (ready.size, ready.sha256, ready.thumbnail_key, ready.updated_at) == (
            42,
            "a" * 64,
            "s1/t.jpg",
            later,
        )
        assert type(ready.image_id) is uuid.UUID and type(ready.parent_id) is uuid.UUID
        assert dict(ready.metadata) == {"camera": "Pixel 9", "row": "é 7"}
        with pytest.raises(ImageAlreadyExists):
            await repository.add(make_record(key="s1/child.png"))


async def test_an_insert_cancelled_mid_statement_leaves_a_usable_pool(
    postgres_url: str, admin: AsyncEngine, schema: str
) -> None:
    blocker = create_engine(postgres_url, connect_args={"server_settings": {"search_path": schema}})
    try:
        async with _repository(postgres_url, schema, ping_idle_after=3600) as repository:
            record = make_record()
            async with blocker.connect() as holding:
                # An uncommitted row with the same key: the insert waits on its lock.
                await holding.execute(
                    sa.text(
                        f"INSERT INTO {TABLE_NAME} (image_id, kind, session_id, bucket, key, "
                        "filename, content_type, state, created_at, updated_at, user_metadata) "
                        "VALUES (:id, 'original', 's1', :bucket, :key, 'a.jpg', 'image/jpeg', "
                        "'uploading', now(), now(), '{}')"
                    ),
                    {"id": uuid.uuid4(), "bucket": record.bucket, "key": record.key},
                )
                waiting = asyncio.create_task(repository.add(record))
                await _until_waiting_on_a_lock(admin, schema)
                waiting.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await waiting
                await holding.rollback()
            other = make_record(key="s1/b.jpg")
            await repository.add(other)  # the pool's only connection serves again
            assert await repository.get(other.image_id) == other
    finally:
        await blocker.dispose()


async def _until_waiting_on_a_lock(admin: AsyncEngine, schema: str) -> None:
    for _ in range(200):
        async with admin.connect() as connection:
            waiting = await connection.scalar(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE application_name = :name AND wait_event_type = 'Lock'"
                ),
                {"name": schema},
            )
        if waiting:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the insert never waited on the lock")
