"""PostgreSQL connections: idle ones pinged before use, lost ones replaced, the fast path's rows."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from demeter_storage import StorageUnavailable
from demeter_storage.adapters.sql.repository import (
    SqlAlchemyMetadataRepository,
)
from demeter_storage.domain.errors import ImageAlreadyExists
from demeter_storage.domain.records import ImageKind, ImageState
from demeter_storage.testing.metadata_contract import make_record
from tests.adapters.sql.postgres_schema import (
    key_locked,
    repository_in,
    terminate_backends,
    until_waiting_on_a_lock,
)

pytestmark = pytest.mark.postgres


async def _kill_the_pooled_connection(
    repository: SqlAlchemyMetadataRepository, admin: AsyncEngine, schema: str
) -> None:
    """Use the pool's connection once (so the pool holds it), then end it server-side."""
    async with repository.engine.connect() as connection:
        await connection.execute(sa.text("SELECT 1"))
    assert await terminate_backends(admin, schema, waiting_on_a_lock=False) == 1


async def test_an_idle_connection_killed_by_the_server_is_replaced_unnoticed(
    postgres_url: str, admin: AsyncEngine, schema: str
) -> None:
    async with repository_in(postgres_url, schema, ping_idle_after=0) as repository:
        await _kill_the_pooled_connection(repository, admin, schema)
        record = make_record()
        await repository.add(record)  # the ping found it dead; a new connection served
        assert await repository.get(record.image_id) == record


async def test_a_busy_connection_lost_mid_use_fails_once_then_is_replaced(
    postgres_url: str, admin: AsyncEngine, schema: str
) -> None:
    async with repository_in(postgres_url, schema, ping_idle_after=3600) as repository:
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
    async with repository_in(postgres_url, schema, ping_idle_after=1) as repository:
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


async def test_an_insert_cancelled_mid_statement_leaves_no_row_and_a_usable_pool(
    postgres_url: str, admin: AsyncEngine, schema: str
) -> None:
    async with repository_in(postgres_url, schema, ping_idle_after=3600) as repository:
        record = make_record()
        async with key_locked(postgres_url, schema, record) as holding:
            waiting = asyncio.create_task(repository.add(record))
            await until_waiting_on_a_lock(admin, schema)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            await holding.rollback()  # the insert goes through, for no caller
        other = make_record(key="s1/b.jpg")
        await repository.add(other)  # the pool's only connection serves again
        assert await repository.get(other.image_id) == other
        assert await repository.get(record.image_id) is None  # the writer removed it
