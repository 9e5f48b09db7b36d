"""Alembic's environment of demeter-storage's migrations (async engines, our version table).

Run three ways: by :func:`demeter_storage.adapters.sql.migrations.upgrade`,
which hands over its locked connection in ``config.attributes["connection"]``;
by Alembic's command line (``alembic -n demeter_storage upgrade head``) with
``sqlalchemy.url`` from the ini section, or else ``DEMETER_DATABASE_URL``;
offline (``--sql``), printing the SQL for an empty database.
"""

from __future__ import annotations

import asyncio
import os

import sqlalchemy as sa
from alembic import context

from demeter_storage.adapters.sql import migrations
from demeter_storage.adapters.sql.engine import create_engine


def _url() -> str:
    url = context.config.get_main_option("sqlalchemy.url") or os.environ.get("DEMETER_DATABASE_URL")
    if not url:
        raise SystemExit(
            "demeter-storage migrations: set sqlalchemy.url in the ini section "
            "(or DEMETER_DATABASE_URL)"
        )
    return url


def _run(connection: sa.Connection) -> None:
    context.configure(connection=connection, **migrations.context_options())
    with context.begin_transaction():
        context.run_migrations()


async def _run_online(url: str) -> None:
    engine = create_engine(url)
    try:
        async with migrations.locked(engine) as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def _main() -> None:
    if context.is_offline_mode():
        context.configure(url=_url(), literal_binds=True, **migrations.context_options())
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = context.config.attributes.get("connection")
    if isinstance(connection, sa.Connection):
        _run(connection)
    else:
        asyncio.run(_run_online(_url()))


_main()
