"""A :class:`~demeter_storage.ports.MetadataRepository` on SQLAlchemy 2 (async).

SQLite (through aiosqlite) is the embedded default; PostgreSQL (through asyncpg)
is for production. Claims for reconcilers are atomic on both: PostgreSQL locks
the candidate rows with ``FOR UPDATE SKIP LOCKED``; SQLite serialises writers,
and the outer ``claimed_by`` condition keeps a claim from being taken twice.
"""

from __future__ import annotations

import builtins
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from demeter_storage.adapters.sql.engine import IDLE_PING_SECONDS, create_engine
from demeter_storage.adapters.sql.rows import INSERT, MARK_READY, to_record, values_of
from demeter_storage.adapters.sql.schema import images_table as images
from demeter_storage.domain.errors import (
    ImageAlreadyExists,
    StorageError,
    StorageUnavailable,
    missing_parent,
)
from demeter_storage.domain.records import ImageKind, ImageRecord, ImageState
from demeter_storage.ports import MetadataRepository

if TYPE_CHECKING:
    from demeter_storage.adapters.sql.asyncpg_statements import AsyncpgStatements

__all__ = ["IDLE_PING_SECONDS", "SqlAlchemyMetadataRepository", "create_engine"]


class SqlAlchemyMetadataRepository(MetadataRepository):
    """Image records in a SQL table (see :mod:`.sqlalchemy_schema`).

    Args:
        engine: an async engine (see :func:`create_engine`).
        owns_engine: dispose of the engine in :meth:`aclose`.
    """

    def __init__(self, engine: AsyncEngine, *, owns_engine: bool = False) -> None:
        self.engine = engine
        self._owns_engine = owns_engine
        # Single statements need no transaction around them (each is atomic):
        # autocommit saves the BEGIN and COMMIT round trips on the hot path.
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._statements: AsyncpgStatements | None = None
        if engine.dialect.driver == "asyncpg":
            from demeter_storage.adapters.sql.asyncpg_statements import AsyncpgStatements  # noqa: PLC0415

            self._statements = AsyncpgStatements(self._autocommit)

    def __repr__(self) -> str:
        return f"SqlAlchemyMetadataRepository(url={self.engine.url!r})"

    async def aclose(self) -> None:
        """Wait for the writes in flight; dispose of the engine when the repository owns it."""
        if self._statements is not None:
            await self._statements.aclose()
        if self._owns_engine:
            await self.engine.dispose()

    @contextlib.contextmanager
    def _translated(self, operation: str) -> Iterator[None]:
        try:
            yield
        except StorageError:
            raise
        except DBAPIError as exc:
            if exc.connection_invalidated or _is_connection_error(exc):
                raise StorageUnavailable(
                    f"database {operation} failed: cannot reach the database ({exc.orig}); "
                    "retry later"
                ) from exc
            raise StorageError(f"database {operation} failed: {exc.orig}") from exc
        except (SQLAlchemyError, OSError) as exc:
            raise StorageUnavailable(
                f"database {operation} failed ({type(exc).__name__}: {exc}); retry later"
            ) from exc

    async def _children(
        self, connection: AsyncConnection, parent_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, list[str]]:
        if not parent_ids:
            return {}
        rows = await connection.execute(
            sa.select(images.c.parent_id, images.c.key)
            .where(images.c.parent_id.in_(parent_ids), images.c.state == ImageState.READY.value)
            .order_by(images.c.key)
        )
        children: dict[uuid.UUID, list[str]] = {}
        for parent_id, key in rows:
            children.setdefault(parent_id, []).append(key)
        return children

    async def _records(self, connection: AsyncConnection, rows: Sequence[Any]) -> list[ImageRecord]:
        children = await self._children(
            connection, [row.image_id for row in rows if row.kind == ImageKind.ORIGINAL.value]
        )
        return [to_record(row, children.get(row.image_id, ())) for row in rows]

    async def _one(self, where: sa.ColumnElement[bool], operation: str) -> ImageRecord | None:
        with self._translated(operation):
            async with self.engine.connect() as connection:
                row = (await connection.execute(sa.select(images).where(where))).first()
                if row is None:
                    return None
                return (await self._records(connection, [row]))[0]

    async def add(self, record: ImageRecord) -> None:
        """Insert a new record (``ImageAlreadyExists`` when its id or a key is taken)."""
        if not await self._insert(values_of(record)):
            holder = await self.get_by_key(record.bucket, record.key)
            if holder is None and record.idempotency_key is not None:
                holder = await self.get_by_idempotency_key(
                    record.session_id, record.idempotency_key
                )
            if (
                holder is None
                and record.parent_id is not None
                and await self.get(record.parent_id) is None
            ):
                raise missing_parent(record.parent_id)  # the foreign key refused it
            raise ImageAlreadyExists(
                record.bucket, record.key, holder.image_id if holder else record.image_id
            )

    async def take_over(
        self,
        old_id: uuid.UUID,
        record: ImageRecord,
        *,
        now: datetime,
        claim_timeout: timedelta,
        deleting_before: datetime | None = None,
    ) -> bool:
        """Replace an unclaimed uploading (or stale deleting) record by ``record``, atomically."""
        claimable = sa.or_(images.c.claimed_by.is_(None), images.c.claimed_at < now - claim_timeout)
        replaceable: sa.ColumnElement[bool] = images.c.state == ImageState.UPLOADING.value
        if deleting_before is not None:
            children = images.alias("children")
            replaceable = sa.or_(
                replaceable,
                sa.and_(
                    images.c.state == ImageState.DELETING.value,
                    images.c.updated_at < deleting_before,
                    ~sa.exists().where(children.c.parent_id == old_id),
                ),
            )
        with self._translated("take over"):
            try:
                async with self.engine.begin() as connection:
                    gone = await connection.execute(
                        sa.delete(images).where(images.c.image_id == old_id, replaceable, claimable)
                    )
                    if not gone.rowcount:
                        return False
                    await connection.execute(INSERT, values_of(record))
            except IntegrityError:
                # Another record holds the key or idempotency key: nothing changed.
                raise ImageAlreadyExists(record.bucket, record.key, None) from None
        return True

    async def get_by_idempotency_key(
        self, session_id: str, idempotency_key: str
    ) -> ImageRecord | None:
        """The session's record created with ``idempotency_key``, or None."""
        return await self._one(
            sa.and_(
                images.c.session_id == session_id,
                images.c.idempotency_key == idempotency_key,
            ),
            "read",
        )

    async def _insert(self, values: dict[str, Any]) -> bool:
        """Insert a row; False if a constraint refused it."""
        with self._translated("insert"):
            if self._statements is not None:
                return await self._statements.insert(values)
            try:
                async with self._autocommit.connect() as connection:
                    await connection.execute(INSERT, values)
            except IntegrityError:
                return False
            return True

    async def get(self, image_id: uuid.UUID) -> ImageRecord | None:
        """The record with this id, or None."""
        return await self._one(images.c.image_id == image_id, "read")

    async def get_by_key(self, bucket: str, key: str) -> ImageRecord | None:
        """The record owning ``key`` in ``bucket``, or None."""
        return await self._one(
            sa.and_(
                images.c.bucket == bucket,
                sa.or_(images.c.key == key, images.c.thumbnail_key == key),
            ),
            "read",
        )

    async def mark_ready(
        self,
        image_id: uuid.UUID,
        *,
        size: int,
        sha256: str,
        thumbnail_key: str | None,
        now: datetime,
        etag: str | None = None,
    ) -> ImageRecord | None:
        """Move an uploading record to ready."""
        values = {
            "target_id": image_id,
            "size": size,
            "sha256": sha256,
            "thumbnail_key": thumbnail_key,
            "updated_at": now,
            "etag": etag,
        }
        with self._translated("update"):
            if self._statements is not None:
                row: Any = await self._statements.mark_ready(
                    image_id,
                    size=size,
                    sha256=sha256,
                    thumbnail_key=thumbnail_key,
                    now=now,
                    etag=etag,
                )
            else:
                async with self._autocommit.connect() as connection:
                    row = (await connection.execute(MARK_READY, values)).first()
        # An uploading original has no ready visualizations yet (they need a ready
        # parent): no query for them.
        return None if row is None else to_record(row)

    async def mark_deleting(
        self, image_id: uuid.UUID, *, now: datetime, from_state: ImageState | None = None
    ) -> builtins.list[ImageRecord]:
        """Mark the record and its visualizations deleting."""
        if from_state is not None:
            with self._translated("update"):
                async with self._autocommit.connect() as connection:
                    rows = (
                        await connection.execute(
                            sa.update(images)
                            .where(
                                images.c.image_id == image_id,
                                images.c.state == from_state.value,
                            )
                            .values(state=ImageState.DELETING.value, updated_at=now)
                            .returning(*images.c)
                        )
                    ).all()
                    return [to_record(row) for row in rows]
        family = sa.or_(images.c.image_id == image_id, images.c.parent_id == image_id)
        with self._translated("update"):
            async with self.engine.begin() as connection:
                await connection.execute(
                    sa.update(images)
                    .where(family, images.c.state != ImageState.DELETING.value)
                    .values(state=ImageState.DELETING.value, updated_at=now)
                )
                rows = (await connection.execute(sa.select(images).where(family))).all()
                if not any(row.image_id == image_id for row in rows):
                    return []
                return [to_record(row) for row in rows]

    async def remove(self, image_ids: Sequence[uuid.UUID]) -> None:
        """Delete these records (their remaining visualizations lose their link)."""
        if not image_ids:
            return
        ids = list(image_ids)
        with self._translated("delete"):
            async with self.engine.begin() as connection:
                # Done here rather than by ON DELETE SET NULL, which SQLite only
                # honours with foreign keys switched on.
                await connection.execute(
                    sa.update(images)
                    .where(images.c.parent_id.in_(ids), images.c.image_id.not_in(ids))
                    .values(parent_id=None)
                )
                await connection.execute(
                    sa.delete(images).where(
                        images.c.image_id.in_(ids), images.c.parent_id.is_not(None)
                    )
                )
                await connection.execute(sa.delete(images).where(images.c.image_id.in_(ids)))

    async def list_session(
        self, session_id: str, *, limit: int, after: tuple[str, str] | None = None
    ) -> builtins.list[ImageRecord]:
        """Ready records of a session, in ``(bucket, key)`` order."""
        query = sa.select(images).where(
            images.c.session_id == session_id, images.c.state == ImageState.READY.value
        )
        if after is not None:
            query = query.where(sa.tuple_(images.c.bucket, images.c.key) > sa.tuple_(*after))
        query = query.order_by(images.c.bucket, images.c.key).limit(limit)
        with self._translated("read"):
            async with self.engine.connect() as connection:
                rows = (await connection.execute(query)).all()
                return await self._records(connection, rows)

    async def claim(
        self,
        *,
        state: ImageState,
        updated_before: datetime,
        now: datetime,
        claimant: str,
        limit: int,
        claim_timeout: timedelta,
        uploads_expired_before: datetime | None = None,
    ) -> builtins.list[ImageRecord]:
        """Claim stale records atomically."""
        claimable = sa.or_(images.c.claimed_by.is_(None), images.c.claimed_at < now - claim_timeout)
        stale: sa.ColumnElement[bool] = images.c.updated_at < updated_before
        if uploads_expired_before is not None and state is ImageState.UPLOADING:
            direct = images.c.upload_expires_at.is_not(None)
            stale = sa.or_(
                sa.and_(direct, images.c.upload_expires_at < uploads_expired_before),
                sa.and_(sa.not_(direct), stale),
            )
        candidates = (
            sa.select(images.c.image_id)
            .where(images.c.state == state.value, stale, claimable)
            .order_by(images.c.updated_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        with self._translated("claim"):
            async with self.engine.begin() as connection:
                rows = (
                    await connection.execute(
                        sa.update(images)
                        .where(images.c.image_id.in_(candidates), claimable)
                        .values(claimed_by=claimant, claimed_at=now)
                        .returning(*images.c)
                    )
                ).all()
                return await self._records(connection, rows)

    async def expiry_candidates(
        self,
        *,
        bucket: str,
        prefix: str,
        created_before: datetime,
        limit: int,
        after: uuid.UUID | None = None,
    ) -> builtins.list[ImageRecord]:
        """Old ready records under a prefix."""
        query = sa.select(images).where(
            images.c.bucket == bucket,
            images.c.state == ImageState.READY.value,
            images.c.created_at < created_before,
        )
        if prefix:
            query = query.where(images.c.key.startswith(prefix, autoescape=True))
        if after is not None:
            query = query.where(images.c.image_id > after)
        query = query.order_by(images.c.image_id).limit(limit)
        with self._translated("read"):
            async with self.engine.connect() as connection:
                rows = (await connection.execute(query)).all()
                return await self._records(connection, rows)

    async def mark_expired(self, image_id: uuid.UUID, *, now: datetime) -> bool:
        """Move a ready record to expired."""
        with self._translated("update"):
            async with self.engine.begin() as connection:
                result = await connection.execute(
                    sa.update(images)
                    .where(images.c.image_id == image_id, images.c.state == ImageState.READY.value)
                    .values(state=ImageState.EXPIRED.value, updated_at=now)
                )
                return bool(result.rowcount)

    async def release(self, image_ids: Sequence[uuid.UUID]) -> None:
        """Give up claims."""
        if not image_ids:
            return
        with self._translated("update"):
            async with self.engine.begin() as connection:
                await connection.execute(
                    sa.update(images)
                    .where(images.c.image_id.in_(list(image_ids)))
                    .values(claimed_by=None, claimed_at=None)
                )

    async def records(self) -> AsyncIterator[ImageRecord]:
        """Every record, streamed."""
        with self._translated("read"):
            async with self.engine.connect() as connection:
                result = await connection.stream(sa.select(images).order_by(images.c.image_id))
                async for partition in result.partitions(500):
                    for record in await self._records(connection, partition):
                        yield record


def _is_connection_error(exc: DBAPIError) -> bool:
    text = f"{type(exc.orig).__name__} {exc.orig}".lower()
    return any(
        word in text
        for word in ("connect", "connection", "closed", "timeout", "terminat", "unavailable")
    )
