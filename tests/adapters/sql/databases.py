"""Databases for the migration tests: PostgreSQL databases of their own, pre-migration tables."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from demeter_storage.adapters.sql.repository import create_engine
from demeter_storage.adapters.sql.schema import TABLE_NAME, images_table

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


def database_url(server_url: str, name: str) -> str:
    """``server_url`` pointing at the database ``name``."""
    return sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)


async def create_postgres_database(server_url: str) -> str:
    """A new empty database on the server of ``server_url``; its name."""
    name = f"demeter_mig_{uuid.uuid4().hex[:12]}"
    await _outside_transactions(server_url, f'CREATE DATABASE "{name}"')
    return name


async def drop_postgres_database(server_url: str, name: str) -> None:
    """Drop the database ``name``, cutting off whoever is still connected."""
    await _outside_transactions(server_url, f'DROP DATABASE "{name}" WITH (FORCE)')


async def _outside_transactions(server_url: str, statement: str) -> None:
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(sa.text(statement))
    finally:
        await admin.dispose()
