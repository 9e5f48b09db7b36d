"""Databases made before the package shipped migrations are upgraded in place, rows and all.

Two such databases exist in the wild: the first release's ``create_all``
(without the ETag and idempotency key), and the later ``create_schema`` that
added those two columns and their unique index to old tables. Both are adopted
by ``create_schema``, keep their rows, and end at the head with no drift.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from demeter_storage.adapters.sql import migrations
from demeter_storage.adapters.sql.repository import (
    SqlAlchemyMetadataRepository,
    create_engine,
)
from demeter_storage.adapters.sql.schema import TABLE_NAME, create_schema
from demeter_storage.domain.records import ImageState
from tests.adapters.sql.databases import (
    first_release_table,
    insert_an_image,
    todays_pre_migration_table,
)

T0 = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)


async def assert_upgraded_with_the_row(engine: AsyncEngine, image_id: uuid.UUID) -> None:
    """The row reads back through the repository; the database is at the head, no drift."""
    repository = SqlAlchemyMetadataRepository(engine)
    record = await repository.get(image_id)
    assert record is not None
    assert (record.state, record.metadata, record.created_at) == (
        ImageState.READY,
        {"plot": 7},
        T0,
    )
    assert (record.etag, record.idempotency_key) == (None, None)
    status = await migrations.status(engine)
    assert status.current == (migrations.head(),)
    assert status.differences == ()


async def _upgrade_keeps_rows(engine: AsyncEngine, table: sa.Table) -> None:
    image_id = await insert_an_image(engine, table)
    await create_schema(engine)
    await create_schema(engine)  # a second time changes nothing
    await assert_upgraded_with_the_row(engine, image_id)


@pytest.fixture
async def sqlite_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'old.sqlite3'}")
    yield engine
    await engine.dispose()


async def test_a_first_release_sqlite_table_is_upgraded_in_place(
    sqlite_engine: AsyncEngine,
) -> None:
    await _upgrade_keeps_rows(sqlite_engine, first_release_table())


async def test_a_pre_migration_sqlite_table_is_adopted_in_place(
    sqlite_engine: AsyncEngine,
) -> None:
    await _upgrade_keeps_rows(sqlite_engine, todays_pre_migration_table())


async def test_a_half_upgraded_sqlite_table_gains_only_what_it_lacks(
    sqlite_engine: AsyncEngine,
) -> None:
    # The old create_schema on SQLite ran each ALTER on its own: a crash could
    # leave one column added and not the other, nor the index.
    table = first_release_table()
    image_id = await insert_an_image(sqlite_engine, table)
    async with sqlite_engine.begin() as connection:
        await connection.execute(sa.text(f"ALTER TABLE {TABLE_NAME} ADD COLUMN etag VARCHAR(128)"))
    await create_schema(sqlite_engine)
    await assert_upgraded_with_the_row(sqlite_engine, image_id)


@pytest.mark.postgres
@pytest.mark.parametrize("table", [first_release_table(), todays_pre_migration_table()])
async def test_an_old_postgres_table_is_upgraded_in_place(
    postgres_url: str, table: sa.Table
) -> None:
    schema = f"demeter_upgrade_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url)
    async with admin.begin() as connection:
        await connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine = create_engine(postgres_url, connect_args={"server_settings": {"search_path": schema}})
    try:
        await _upgrade_keeps_rows(engine, table)
    finally:
        await engine.dispose()
        async with admin.begin() as connection:
            await connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()
