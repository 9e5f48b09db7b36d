"""The host app's own Alembic env.py: its tables, and none of demeter-storage's."""

from __future__ import annotations

import asyncio
import os

import sqlalchemy as sa
from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine

from demeter_storage.adapters.sql.migrations import not_demeter_storage

# The app's models (an app imports its own MetaData here).
metadata = sa.MetaData()
sa.Table(
    "orders",
    metadata,
    sa.Column("order_id", sa.Integer(), primary_key=True),
    sa.Column("photo_id", sa.Uuid(), nullable=True),
)


def run_migrations(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # demeter-storage's tables belong to its own migrations: the app's
        # autogenerate and `alembic check` must neither drop nor report them.
        include_name=not_demeter_storage,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_online() -> None:
    engine = create_async_engine(os.environ["DATABASE_URL"])
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_migrations)
    finally:
        await engine.dispose()


asyncio.run(run_online())
