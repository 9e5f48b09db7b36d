"""PostgreSQL connections: idle ones pinged before use, lost ones replaced, the fast path's rows."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
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


async def _repository(
    postgres_url: str, schema: str, ping_idle_after: float
) -> SqlAlchemyMetadataRepository:
    engine = create_engine(
        postgres_url,
        ping_idle_after=ping_idle_after,
        pool_size=1,
        max_overflow=0,
        connect_args={"server_settings": {"search_path": schema, "application_name": schema}},
    )
    await create_schema(engine)
    return SqlAlchemyMetadataRepository(engine, owns_engine=True)


@pytest.fixture
async def schema(postgres_url: str) -> AsyncIterator[str]:
    name = f"demeter_conn_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url)
    async with admin.begin() as connection:
        await connection.execute(sa.text(f'CREATE SCHEMA "{name}"'))
    yield name
    async with admin.begin() as connection:
        await connection.execute(sa.text(f'DROP SCHEMA "{name}" CASCADE'))
    await admin.dispose()


async def _kill_connections(postgres_url: str, schema: str) -> int:
    """Terminate the server side of the repository's connections (named after ``schema``)."""
    admin: AsyncEngine = create_engine(postgres_url)
    try:
        async with admin.connect() as connection:
            killed = await connection.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = :name"
                ),
                {"name": schema},
            )
            return len(killed.all())
    finally:
        await admin.dispose()


async def _touch(repository: SqlAlchemyMetadataRepository) -> None:
    """Use the pooled connection once, so that the pool holds it."""
    async with repository.engine.connect() as connection:
        await connection.execute(sa.text("SELECT 1"))


async def test_an_idle_connection_killed_by_the_server_is_replaced_unnoticed(
    postgres_url: str, schema: str
) -> None:
    repository = await _repository(postgres_url, schema, ping_idle_after=0)
    try:
        await _touch(repository)
        assert await _kill_connections(postgres_url, schema) == 1
        record = make_record()
        await repository.add(record)  # the ping found it dead; a new connection served
        assert await repository.get(record.image_id) == record
    finally:
        await repository.aclose()


async def test_a_busy_connection_lost_mid_use_fails_once_then_is_replaced(
    postgres_url: str, schema: str
) -> None:
    repository = await _repository(postgres_url, schema, ping_idle_after=3600)
    try:
        await _touch(repository)
        assert await _kill_connections(postgres_url, schema) == 1
        record = make_record()
        with pytest.raises(StorageUnavailable, match="cannot reach the database"):
            await repository.add(record)  # no ping inside the window: the insert finds out
        await repository.add(record)
        ready = await repository.mark_ready(
            record.image_id, size=3, sha256="0" * 64, thumbnail_key=None, now=record.created_at
        )
        assert ready is not None and ready.state is ImageState.READY
    finally:
        await repository.aclose()


async def test_the_fast_path_reads_back_what_sqlalchemy_reads(
    postgres_url: str, schema: str
) -> None:
    repository = await _repository(postgres_url, schema, ping_idle_after=1)
    try:
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
    finally:
        await repository.aclose()


async def test_an_insert_cancelled_mid_statement_leaves_a_usable_pool(
    postgres_url: str, schema: str
) -> None:
    repository = await _repository(postgres_url, schema, ping_idle_after=3600)
    blocker = create_engine(postgres_url, connect_args={"server_settings": {"search_path": schema}})
    try:
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
            await _until_waiting_on_a_lock(postgres_url, schema)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            await holding.rollback()
        other = make_record(key="s1/b.jpg")
        await repository.add(other)  # the pool's only connection was replaced
        assert await repository.get(other.image_id) == other
    finally:
        await blocker.dispose()
        await repository.aclose()


async def _until_waiting_on_a_lock(postgres_url: str, schema: str) -> None:
    admin = create_engine(postgres_url)
    try:
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
    finally:
        await admin.dispose()
