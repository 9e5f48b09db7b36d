"""Records keep their object's ETag and an idempotency key, unique per session where set.

Both columns are nullable, so existing rows stay valid. A pre-migration table
that ``create_schema`` upgraded already has some or all of them: only what it
lacks is added.

Revision ID: demeter_0002
Revises: demeter_0001
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import sqlalchemy as sa
from alembic import context, op

revision: Final = "demeter_0002"
down_revision: Final[str | None] = "demeter_0001"
branch_labels: Final[Sequence[str] | None] = None
depends_on: Final[str | None] = None

TABLE: Final = "demeter_images"
INDEX: Final = "uq_demeter_images_idempotency_key"
COLUMNS: Final = ("etag", "idempotency_key")


def upgrade() -> None:
    """Add the two columns and the unique index, those that are missing."""
    columns: set[str] = set()
    indexes: set[str | None] = set()
    if not context.is_offline_mode():
        inspector = sa.inspect(op.get_bind())
        columns = {column["name"] for column in inspector.get_columns(TABLE)}
        indexes = {index["name"] for index in inspector.get_indexes(TABLE)}
    for name in COLUMNS:
        if name not in columns:
            op.add_column(TABLE, sa.Column(name, sa.String(128), nullable=True))
    if INDEX not in indexes:
        # Unique where set: NULLs never clash, on SQLite and PostgreSQL alike.
        op.create_index(INDEX, TABLE, ["session_id", "idempotency_key"], unique=True)


def downgrade() -> None:
    """Drop the index and the two columns (their values are lost)."""
    op.drop_index(INDEX, table_name=TABLE)
    for name in reversed(COLUMNS):
        op.drop_column(TABLE, name)
