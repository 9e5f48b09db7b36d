"""What the ``db`` command needs of the driver: an engine with masked errors, the SQLite file."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from alembic.util.exc import CommandError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from demeter_storage.adapters.sql.engine import create_engine
from demeter_storage.domain.errors import StorageError, StorageUnavailable
from demeter_storage.domain.urls import mask_url, redact

Database = AsyncEngine
"""The engine the migrations run on."""


def missing_sqlite_file(url: str) -> Path | None:
    """The SQLite file ``url`` names, if it does not exist yet (None for other databases)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None  # create_engine says what is wrong with it
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    path = Path(parsed.database)
    return None if path.exists() else path


@contextlib.asynccontextmanager
async def database(url: str) -> AsyncIterator[Database]:
    """An engine on ``url``; database errors become one masked ``StorageUnavailable``."""
    engine = create_engine(url)
    try:
        yield engine
    except StorageError:
        raise
    except (SQLAlchemyError, OSError, CommandError) as exc:
        # Drivers quote what they were given: the chain would show the password.
        raise StorageUnavailable(
            f"the database {mask_url(url)} failed: {redact(str(exc), url)}"
        ) from None
    finally:
        await engine.dispose()
