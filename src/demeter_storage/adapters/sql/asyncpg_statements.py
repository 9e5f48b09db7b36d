"""The upload's two record writes, straight to asyncpg in batches: concurrent uploads wait on them.

Every upload writes its record twice: ``uploading`` before the object is
stored, ``ready`` after. These two go to the asyncpg connection (from the
engine's pool; asyncpg caches their prepared statements), with SQL rendered
once from the table definition with SQLAlchemy's identifier quoting, so the
two paths never disagree on names. Concurrent writes share statements
(:class:`~demeter_storage.adapters.sql.batching.BatchWriter`): a lone write is
a one-row statement, the writes that arrive meanwhile go together over
``unnest`` of arrays. Each statement is atomic, so a batch refused as a whole
wrote nothing and is written again row by row, each caller getting its own
outcome; only a lost connection fails the whole batch. Errors are translated
as on the SQLAlchemy path: a lost connection is invalidated and becomes
:class:`~demeter_storage.domain.errors.StorageUnavailable`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from types import SimpleNamespace
from typing import Any, Final, NamedTuple, TypeVar

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from demeter_storage.adapters.sql.batching import DEFAULT_MAX_BATCH, BatchWriter
from demeter_storage.adapters.sql.schema import images_table as images
from demeter_storage.domain.errors import StorageError, StorageUnavailable
from demeter_storage.domain.records import ImageState

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

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


class ReadyUpdate(NamedTuple):
    """One ``mark_ready``: the record and the values it takes."""

    image_id: uuid.UUID
    size: int
    sha256: str
    thumbnail_key: str | None
    now: datetime
    etag: str | None


class AsyncpgStatements:
    """The insert and the ``ready`` update, rendered for one engine's dialect.

    Args:
        engine: an engine on the ``postgresql+asyncpg`` driver, in autocommit
            mode (each statement is atomic on its own).
        max_batch: rows per statement at most.
    """

    def __init__(self, engine: AsyncEngine, *, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        self._engine = engine
        quote = engine.dialect.identifier_preparer
        table = quote.format_table(images)
        column = quote.quote
        self._insert_columns = [c.name for c in images.c if c.name not in _UNSET_ON_INSERT]
        self._metadata_at = self._insert_columns.index("user_metadata")  # sent as JSON text
        self._id_at = self._insert_columns.index("image_id")
        names = ", ".join(column(name) for name in self._insert_columns)
        slots = ", ".join(f"${number}" for number in range(1, len(self._insert_columns) + 1))
        self._insert_sql = f"INSERT INTO {table} ({names}) VALUES ({slots})"  # noqa: S608
        arrays = ", ".join(
            f"${number}::{images.c[name].type.compile(dialect=engine.dialect)}[]"
            for number, name in enumerate(self._insert_columns, start=1)
        )
        # DO NOTHING leaves out a row whose id or key is taken (also by an
        # earlier row of the batch); RETURNING tells which rows went in.
        self._insert_many_sql = (
            f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}) "  # noqa: S608
            f"ON CONFLICT DO NOTHING RETURNING {column('image_id')}"
        )
        ready = (
            f"{column('state')} = $2, {column('size')} = {{size}}, "
            f"{column('sha256')} = {{sha256}}, {column('thumbnail_key')} = {{thumbnail_key}}, "
            f"{column('updated_at')} = {{updated_at}}, {column('etag')} = {{etag}}"
        )
        unclaimed_upload = (
            f"{{table}}.{column('state')} = $7 AND {{table}}.{column('claimed_by')} IS NULL"
        )
        self._mark_ready_sql = (
            f"UPDATE {table} SET "  # noqa: S608
            + ready.format(size="$3", sha256="$4", thumbnail_key="$5", updated_at="$6", etag="$8")
            + f" WHERE {column('image_id')} = $1 AND "
            + unclaimed_upload.format(table=table)
            + " RETURNING *"
        )
        self._mark_ready_many_sql = (
            f"UPDATE {table} SET "  # noqa: S608
            + ready.format(
                size="ready.size",
                sha256="ready.sha256",
                thumbnail_key="ready.thumbnail_key",
                updated_at="ready.updated_at",
                etag="ready.etag",
            )
            + " FROM unnest($1::uuid[], $3::bigint[], $4::text[], $5::text[], $6::timestamptz[],"
            " $8::text[]) AS ready(image_id, size, sha256, thumbnail_key, updated_at, etag)"
            f" WHERE {table}.{column('image_id')} = ready.image_id AND "
            + unclaimed_upload.format(table=table)
            + f" RETURNING {table}.*"
        )
        self._remove_sql = f"DELETE FROM {table} WHERE {column('image_id')} = ANY($1::uuid[])"  # noqa: S608
        self._inserts: BatchWriter[_Session, list[Any], bool] = BatchWriter(
            self._insert_batch,
            session=self._session,
            abandoned=self._remove_abandoned,
            identity=lambda row: row[self._id_at],
            max_batch=max_batch,
        )
        self._updates: BatchWriter[_Session, ReadyUpdate, SimpleNamespace | None] = BatchWriter(
            self._mark_ready_batch,
            session=self._session,
            identity=lambda update: update.image_id,
            max_batch=max_batch,
        )

    async def aclose(self) -> None:
        """Wait for the writes in flight, and for their connections to go back to the pool."""
        await self._inserts.idle()
        await self._updates.idle()

    @property
    def batches_written(self) -> int:
        """Statements sent so far by the insert and update batches (for tests and benchmarks)."""
        return self._inserts.batches + self._updates.batches

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[_Session]:
        """A pooled connection, held by a batch writer while batches keep coming."""
        async with self._engine.connect() as connection:
            yield _Session(connection, (await connection.get_raw_connection()).driver_connection)

    @asynccontextmanager
    async def _translated(self, session: _Session, operation: str) -> AsyncIterator[None]:
        try:
            yield
        except asyncpg.IntegrityConstraintViolationError:
            raise  # the caller's to judge: a taken id or key
        except _CONNECTION_ERRORS as exc:
            await _invalidate(session.connection, exc)
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
        return await self._inserts.submit(arguments)

    async def _insert_one(self, session: _Session, arguments: Sequence[Any]) -> bool:
        try:
            async with self._translated(session, "insert"):
                await session.driver.execute(self._insert_sql, *arguments)
        except asyncpg.IntegrityConstraintViolationError:
            return False
        return True

    async def _insert_batch(
        self, session: _Session, rows: Sequence[list[Any]]
    ) -> list[bool | Exception]:
        if len(rows) == 1:
            return [await self._insert_one(session, rows[0])]
        try:
            async with self._translated(session, "insert"):
                answers = await session.driver.fetch(
                    self._insert_many_sql, *zip(*rows, strict=True)
                )
        except StorageUnavailable:
            raise  # the connection is gone: every row of the batch fails alike
        except (asyncpg.IntegrityConstraintViolationError, StorageError):
            # Refused as a whole (atomic: nothing written): each row's own outcome, one by one.
            return await _one_by_one(functools.partial(self._insert_one, session), rows)
        inserted = {uuid.UUID(int=answer[0].int) for answer in answers}
        return [row[self._id_at] in inserted for row in rows]

    async def _remove_abandoned(
        self, session: _Session, abandoned: list[tuple[list[Any], bool]]
    ) -> None:
        """Delete the rows inserted for callers cancelled meanwhile: they never learnt of them."""
        ids = [row[self._id_at] for row, inserted in abandoned if inserted]
        if ids:
            async with self._translated(session, "delete"):
                await session.driver.execute(self._remove_sql, ids)

    async def mark_ready(
        self,
        image_id: uuid.UUID,
        *,
        size: int,
        sha256: str,
        thumbnail_key: str | None,
        now: datetime,
        etag: str | None = None,
    ) -> SimpleNamespace | None:
        """Move an uploading, unclaimed record to ready; its new row, or None."""
        return await self._updates.submit(
            ReadyUpdate(image_id, size, sha256, thumbnail_key, now, etag)
        )

    async def _mark_ready_one(
        self, session: _Session, update: ReadyUpdate
    ) -> SimpleNamespace | None:
        async with self._translated(session, "update"):
            row = await session.driver.fetchrow(
                self._mark_ready_sql,
                update.image_id,
                ImageState.READY.value,
                update.size,
                update.sha256,
                update.thumbnail_key,
                update.now,
                ImageState.UPLOADING.value,
                update.etag,
            )
        return None if row is None else _namespace(row)

    async def _mark_ready_batch(
        self, session: _Session, updates: Sequence[ReadyUpdate]
    ) -> list[SimpleNamespace | Exception | None]:
        if len(updates) == 1:
            return [await self._mark_ready_one(session, updates[0])]
        ids, sizes, digests, thumbnails, times, etags = zip(*updates, strict=True)
        try:
            async with self._translated(session, "update"):
                rows = await session.driver.fetch(
                    self._mark_ready_many_sql,
                    ids,
                    ImageState.READY.value,
                    sizes,
                    digests,
                    thumbnails,
                    times,
                    ImageState.UPLOADING.value,
                    etags,
                )
        except StorageUnavailable:
            raise  # the connection is gone: every row of the batch fails alike
        except (asyncpg.IntegrityConstraintViolationError, StorageError):
            # Refused as a whole (atomic: nothing written): each row's own outcome, one by one.
            return await _one_by_one(functools.partial(self._mark_ready_one, session), updates)
        updated = {row.image_id: row for row in map(_namespace, rows)}
        return [updated.get(update.image_id) for update in updates]


class _Session(NamedTuple):
    connection: AsyncConnection
    driver: asyncpg.Connection


async def _one_by_one(
    write: Callable[[ItemT], Awaitable[ResultT]], items: Sequence[ItemT]
) -> list[ResultT | Exception]:
    """Each item's own outcome, after its batch failed as a whole (and wrote nothing).

    A lost connection fails the rest at once: they would only fail in turn.
    """
    outcomes: list[ResultT | Exception] = []
    for item in items:
        try:
            outcomes.append(await write(item))
        except StorageUnavailable as exc:
            return outcomes + [exc] * (len(items) - len(outcomes))
        except Exception as exc:  # handed to that item's caller
            outcomes.append(exc)
    return outcomes


def _namespace(row: asyncpg.Record) -> SimpleNamespace:
    """A returned row with the types the SQLAlchemy path gives (plain UUIDs, parsed JSON)."""
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
