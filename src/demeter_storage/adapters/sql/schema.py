"""The SQL schema of image records: the models our Alembic migrations build.

The package ships its migrations (:mod:`demeter_storage.adapters.sql.migrations`);
:func:`create_schema` runs them, so the embedded default (SQLite under the
storage root) upgrades itself at start-up. Host apps with Alembic environments
of their own run ours beside theirs (docs/migrations.md) rather than putting
:data:`metadata` into their ``target_metadata``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

TABLE_NAME: Final = "demeter_images"

metadata = sa.MetaData()
"""The package's SQLAlchemy ``MetaData``: the models our migrations must match (``db check``)."""


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


async def create_schema(engine: AsyncEngine) -> None:
    """Upgrade the database to the newest schema (the embedded default runs it at start-up).

    It runs our migrations under a lock, so processes starting at once are
    safe, and does nothing when the database is up to date. A table made by
    a release from before migrations keeps its rows and gains what it lacks.

    Raises:
        ConfigurationError: a newer release of the package migrated the
            database; nothing is downgraded.
    """
    # The migrations import this module (their models): import them when run.
    from demeter_storage.adapters.sql import migrations  # noqa: PLC0415

    await migrations.upgrade(engine)
