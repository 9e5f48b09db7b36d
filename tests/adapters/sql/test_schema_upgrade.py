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
from demeter_storage.adapters.sql.schema import TABLE_NAME, create_schema, images_table
from demeter_storage.domain.records import ImageState

T0 = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
ADDED_LATER = ("etag", "idempotency_key")
ADDED_INDEX = "uq_demeter_images_idempotency_key"


def first_release_table() -> sa.Table:
    """The table as the first release's ``create_all`` made it: no ETag, no idempotency key."""
    old = sa.MetaData()
    columns = [
        sa.Column(
            column.name,
            column.type,
            *(
                [sa.ForeignKey(f"{TABLE_NAME}.image_id", name="fk_demeter_images_parent")]
                if column.name == "parent_id"
                else []
            ),
            primary_key=column.primary_key,
            nullable=column.nullable,
        )
        for column in images_table.c
        if column.name not in ADDED_LATER
    ]
    table = sa.Table(
        TABLE_NAME,
        old,
        *columns,
        sa.UniqueConstraint("bucket", "key", name="uq_demeter_images_bucket_key"),
    )
    for index in images_table.indexes:
        if index.name != ADDED_INDEX:
            sa.Index(index.name, *(table.c[column.name] for column in index.columns))
    return table


def todays_pre_migration_table() -> sa.Table:
    """The table as ``create_all`` made it right before migrations (every column and index)."""
    return images_table.to_metadata(sa.MetaData())


async def insert_an_image(engine: AsyncEngine, table: sa.Table) -> uuid.UUID:
    """A ready image's row in ``table`` (created first), as an older release wrote it."""
    image_id = uuid.uuid4()
    async with engine.begin() as connection:
        await connection.run_sync(table.metadata.create_all)
        await connection.execute(
            table.insert().values(
                image_id=image_id,
                kind="original",
                session_id="s1",
                bucket="demeter-photos-original",
                key=f"s1/{image_id}.jpg",
                filename="a.jpg",
                content_type="image/jpeg",
                size=3,
                sha256="a" * 64,
                state="ready",
                created_at=T0,
                updated_at=T0,
                user_metadata={"plot": 7},
            )
        )
    return image_id


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
