"""PostgreSQL fixtures of the adapters' tests: a schema of their own, a small repository in it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from demeter_storage.adapters.sql.repository import (
    SqlAlchemyMetadataRepository,
    create_engine,
)
from demeter_storage.adapters.sql.schema import TABLE_NAME, create_schema
from demeter_storage.domain.records import ImageRecord


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
async def repository_in(
    postgres_url: str, schema: str, ping_idle_after: float = 1.0, pool_size: int = 1
) -> AsyncIterator[SqlAlchemyMetadataRepository]:
    """A repository on a pool of ``pool_size`` connections in ``schema``, closed afterwards."""
    engine = create_engine(
        postgres_url,
        ping_idle_after=ping_idle_after,
        pool_size=pool_size,
        max_overflow=0,
        connect_args={"server_settings": {"search_path": schema, "application_name": schema}},
    )
    await create_schema(engine)
    repository = SqlAlchemyMetadataRepository(engine, owns_engine=True)
    try:
        yield repository
    finally:
        await repository.aclose()


@asynccontextmanager
async def key_locked(
    postgres_url: str, schema: str, record: ImageRecord
) -> AsyncIterator[AsyncConnection]:
    """An uncommitted row holding ``record``'s key: an insert of it waits until the block ends.

    Yields the holding connection: roll it back to let the insert through.
    """
    blocker = create_engine(postgres_url, connect_args={"server_settings": {"search_path": schema}})
    try:
        async with blocker.connect() as holding:
            await holding.execute(
                sa.text(
                    f"INSERT INTO {TABLE_NAME} (image_id, kind, session_id, bucket, key, "
                    "filename, content_type, state, created_at, updated_at, user_metadata) "
                    "VALUES (:id, 'original', 's1', :bucket, :key, 'a.jpg', 'image/jpeg', "
                    "'uploading', now(), now(), '{}')"
                ),
                {"id": uuid.uuid4(), "bucket": record.bucket, "key": record.key},
            )
            yield holding
    finally:
        await blocker.dispose()


async def until_waiting_on_a_lock(admin: AsyncEngine, schema: str) -> None:
    """Return once a connection of ``schema``'s repository waits on a lock."""
    for _ in range(500):
        if await _backends(admin, schema, waiting_on_a_lock=True, terminate=False):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no statement ever waited on the lock")


async def terminate_backends(admin: AsyncEngine, schema: str, *, waiting_on_a_lock: bool) -> int:
    """End ``schema``'s repository connections server-side (only those waiting on a lock)."""
    return await _backends(admin, schema, waiting_on_a_lock=waiting_on_a_lock, terminate=True)


async def _backends(
    admin: AsyncEngine, schema: str, *, waiting_on_a_lock: bool, terminate: bool
) -> int:
    """How many of ``schema``'s connections match, terminating them if asked."""
    what = "pg_terminate_backend(pid)" if terminate else "pid"
    waiting = " AND wait_event_type = 'Lock'" if waiting_on_a_lock else ""
    async with admin.connect() as connection:
        found = await connection.execute(
            sa.text(f"SELECT {what} FROM pg_stat_activity WHERE application_name = :name{waiting}"),
            {"name": schema},
        )
        return len(found.all())
