"""A table made by the first release gains the columns added since, and keeps its rows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from demeter_storage.adapters.sql.repository import (
    SqlAlchemyMetadataRepository,
    create_engine,
)
from demeter_storage.adapters.sql.schema import (
    ADDED_COLUMNS,
    TABLE_NAME,
    create_schema,
    images_table,
)
from demeter_storage.domain.records import ImageState

T0 = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)


def _first_release_table() -> sa.Table:
    """The table as the first release created it: without the added columns and index."""
    old = sa.MetaData()
    columns = [
        sa.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
        for c in images_table.c
        if c.name not in ADDED_COLUMNS
    ]
    return sa.Table(
        TABLE_NAME,
        old,
        *columns,
        sa.UniqueConstraint("bucket", "key", name="uq_demeter_images_bucket_key"),
    )


async def _upgrade_keeps_rows(engine: Any) -> None:
    table = _first_release_table()
    image_id = uuid.uuid4()
    async with engine.begin() as connection:
        await connection.run_sync(table.metadata.create_all)
        await connection.execute(
            table.insert().values(
                image_id=image_id,
                kind="original",
                session_id="s1",
                bucket="demeter-photos-original",
                key="s1/a.jpg",
                filename="a.jpg",
                content_type="image/jpeg",
                size=3,
                sha256="a" * 64,
                state="ready",
                created_at=T0,
                updated_at=T0,
                user_metadata={},
            )
        )
    await create_schema(engine)
    await create_schema(engine)  # a second time changes nothing
    repository = SqlAlchemyMetadataRepository(engine)
    record = await repository.get(image_id)
    assert record is not None
    assert (record.state, record.etag, record.idempotency_key) == (ImageState.READY, None, None)
    async with engine.connect() as connection:
        names = await connection.run_sync(
            lambda sync: {c["name"] for c in sa.inspect(sync).get_columns(TABLE_NAME)}
        )
        indexes = await connection.run_sync(
            lambda sync: {i["name"] for i in sa.inspect(sync).get_indexes(TABLE_NAME)}
        )
    assert set(ADDED_COLUMNS) <= names
    assert "uq_demeter_images_idempotency_key" in indexes
    await repository.aclose()


async def test_an_old_sqlite_table_is_upgraded_in_place(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'old.sqlite3'}")
    try:
        await _upgrade_keeps_rows(engine)
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_an_old_postgres_table_is_upgraded_in_place(postgres_url: str) -> None:
    schema = f"demeter_upgrade_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url)
    async with admin.begin() as connection:
        await connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine = create_engine(postgres_url, connect_args={"server_settings": {"search_path": schema}})
    try:
        await _upgrade_keeps_rows(engine)
    finally:
        await engine.dispose()
        async with admin.begin() as connection:
            await connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()
