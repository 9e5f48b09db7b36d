"""The upload path's two statements, sent straight to asyncpg on PostgreSQL.

Every upload writes its record twice: ``uploading`` before the object is
stored, ``ready`` after. The profile of ``upload_original`` showed
SQLAlchemy's execution layer costing more client CPU than asyncpg's own work
for these two statements, so they go straight to the asyncpg connection
(from the same pool; asyncpg caches their prepared statements). The SQL is
rendered once from the table definition with SQLAlchemy's identifier
quoting, so the two paths can never disagree on names.

Errors are translated here as the SQLAlchemy path translates them: a lost
connection is invalidated (the pool replaces it) and becomes
:class:`~demeter_storage.domain.errors.StorageUnavailable`.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from types import SimpleNamespace
from typing import Any, Final

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from demeter_storage.adapters.sqlalchemy_schema import images_table as images
from demeter_storage.domain.errors import StorageError, StorageUnavailable
from demeter_storage.domain.records import ImageState

_UNSET_ON_INSERT: Final = frozenset({"claimed_by", "claimed_at"})
_CONNECTION_ERRORS: Final = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # "connection is closed"
    # The server's "terminating connection" can arrive mid-statement, as one of these:
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)


class AsyncpgStatements:
    """The insert and the ``ready`` update, rendered for one engine's dialect.

    Args:
        engine: an engine on the ``postgresql+asyncpg`` driver, in autocommit
            mode (each statement is atomic on its own).
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        quote = engine.dialect.identifier_preparer
        table = quote.format_table(images)
        self._insert_columns = [c.name for c in images.c if c.name not in _UNSET_ON_INSERT]
        self._metadata_at = self._insert_columns.index("user_metadata")  # sent as JSON text
        names = ", ".join(quote.quote(name) for name in self._insert_columns)
        slots = ", ".join(f"${number}" for number in range(1, len(self._insert_columns) + 1))
        self._insert_sql = f"INSERT INTO {table} ({names}) VALUES ({slots})"  # noqa: S608
        column = quote.quote
        self._mark_ready_sql = (
            f"UPDATE {table} SET {column('state')} = $2, {column('size')} = $3, "  # noqa: S608
            f"{column('sha256')} = $4, {column('thumbnail_key')} = $5, "
            f"{column('updated_at')} = $6 "
            f"WHERE {column('image_id')} = $1 AND {column('state')} = $7 "
            f"AND {column('claimed_by')} IS NULL RETURNING *"
        )

    @asynccontextmanager
    async def _driver(self, operation: str) -> AsyncIterator[asyncpg.Connection]:
        async with self._engine.connect() as connection:
            driver = (await connection.get_raw_connection()).driver_connection
            try:
                yield driver
            except asyncpg.IntegrityConstraintViolationError:
                raise  # the caller's to judge: a taken id or key
            except _CONNECTION_ERRORS as exc:
                await _invalidate(connection, exc)
                raise StorageUnavailable(
                    f"database {operation} failed: cannot reach the database "
                    f"({type(exc).__name__}: {exc}); retry later"
                ) from exc
            except asyncpg.PostgresError as exc:
                raise StorageError(f"database {operation} failed: {exc}") from exc

    async def insert(self, values: Mapping[str, Any]) -> bool:
        """Insert one record (``values`` as for SQLAlchemy's insert of the table).

        Returns:
            False if a constraint refused it (its id or key is taken), as
            SQLAlchemy's ``IntegrityError`` says on the other path.
        """
        arguments = [values.get(name) for name in self._insert_columns]
        arguments[self._metadata_at] = json.dumps(arguments[self._metadata_at])
        try:
            async with self._driver("insert") as driver:
                await driver.execute(self._insert_sql, *arguments)
        except asyncpg.IntegrityConstraintViolationError:
            return False
        return True

    async def mark_ready(
        self,
        image_id: uuid.UUID,
        *,
        size: int,
        sha256: str,
        thumbnail_key: str | None,
        now: datetime,
    ) -> SimpleNamespace | None:
        """Move an uploading, unclaimed record to ready; its new row, or None."""
        async with self._driver("update") as driver:
            row = await driver.fetchrow(
                self._mark_ready_sql,
                image_id,
                ImageState.READY.value,
                size,
                sha256,
                thumbnail_key,
                now,
                ImageState.UPLOADING.value,
            )
        if row is None:
            return None
        fields = dict(row.items())
        for name in ("image_id", "parent_id"):  # asyncpg's own UUID subclass
            if fields[name] is not None:
                fields[name] = uuid.UUID(int=fields[name].int)
        stored = fields["user_metadata"]
        fields["user_metadata"] = json.loads(stored) if isinstance(stored, str) else stored
        return SimpleNamespace(**fields)


async def _invalidate(connection: AsyncConnection, cause: BaseException) -> None:
    """Drop a connection that failed under us, so the pool never hands it out again."""
    with contextlib.suppress(Exception):  # it is being discarded either way
        await connection.invalidate(cause)
