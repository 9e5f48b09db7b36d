"""The SQL schema of image records, for host apps' migrations and the embedded default.

Host apps that manage their schema with Alembic include :data:`metadata` in
their ``target_metadata`` (or copy :data:`images_table` into a migration); the
embedded default (SQLite under the storage root) calls :func:`create_schema`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

TABLE_NAME: Final = "demeter_images"

metadata = sa.MetaData()
"""The package's SQLAlchemy ``MetaData``: include it in your Alembic ``target_metadata``."""


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every database (SQLite keeps naive ones)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        """Store UTC (naive on SQLite, which has no time zones)."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("datetimes stored by demeter-storage must be timezone-aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        """Return UTC-aware datetimes."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


images_table = sa.Table(
    TABLE_NAME,
    metadata,
    sa.Column("image_id", sa.Uuid(), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("session_id", sa.String(128), nullable=False),
    sa.Column("bucket", sa.String(63), nullable=False),
    sa.Column("key", sa.String(1024), nullable=False),
    sa.Column("filename", sa.String(255), nullable=False),
    sa.Column("content_type", sa.String(255), nullable=False),
    sa.Column("size", sa.BigInteger(), nullable=True),
    sa.Column("sha256", sa.String(64), nullable=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column(
        "parent_id",
        sa.Uuid(),
        sa.ForeignKey(f"{TABLE_NAME}.image_id", name="fk_demeter_images_parent"),
        nullable=True,
    ),
    sa.Column("thumbnail_key", sa.String(1024), nullable=True),
    sa.Column("user_metadata", sa.JSON(), nullable=False),
    sa.Column("upload_expires_at", UTCDateTime(), nullable=True),
    sa.Column("claimed_by", sa.String(64), nullable=True),
    sa.Column("claimed_at", UTCDateTime(), nullable=True),
    sa.Column("etag", sa.String(128), nullable=True),
    sa.Column("idempotency_key", sa.String(128), nullable=True),
    sa.UniqueConstraint("bucket", "key", name="uq_demeter_images_bucket_key"),
    sa.Index("ix_demeter_images_session", "session_id", "bucket", "key"),
    sa.Index("ix_demeter_images_state_updated", "state", "updated_at"),
    sa.Index("ix_demeter_images_parent", "parent_id"),
    sa.Index("ix_demeter_images_thumbnail", "bucket", "thumbnail_key"),
    # Unique where set: NULLs never clash, on SQLite and PostgreSQL alike.
    sa.Index("uq_demeter_images_idempotency_key", "session_id", "idempotency_key", unique=True),
)
"""The table of image records: one row per original or visualization."""


ADDED_COLUMNS: Final = ("etag", "idempotency_key")
"""Columns added after the first release: :func:`create_schema` adds them to older tables."""


async def create_schema(engine: AsyncEngine) -> None:
    """Create the table and its indexes if they do not exist (the embedded default).

    A table made by an earlier release gains the columns and index added since
    (all nullable, so its rows stay valid). Apps with their own migrations
    should generate them from :data:`metadata` instead.
    """
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
        await connection.run_sync(_add_missing_columns)


def _add_missing_columns(connection: sa.Connection) -> None:
    present = {column["name"] for column in sa.inspect(connection).get_columns(TABLE_NAME)}
    for name in ADDED_COLUMNS:
        if name not in present:
            column = images_table.c[name]
            kind = column.type.compile(dialect=connection.dialect)
            quote = connection.dialect.identifier_preparer
            connection.execute(
                sa.text(
                    f"ALTER TABLE {quote.format_table(images_table)} "
                    f"ADD COLUMN {quote.quote(name)} {kind}"
                )
            )
    for index in images_table.indexes:
        index.create(connection, checkfirst=True)
