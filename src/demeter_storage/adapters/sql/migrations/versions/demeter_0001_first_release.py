"""The image records' table as the first release created it.

A table that ``create_all`` made before the package had migrations is adopted
as it is (its rows stay); only the indexes it lacks are created.

Revision ID: demeter_0001
Revises: (none)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import sqlalchemy as sa
from alembic import context, op

revision: Final = "demeter_0001"
down_revision: Final[str | None] = None
branch_labels: Final[Sequence[str] | None] = ("demeter_storage",)
depends_on: Final[str | None] = None

TABLE: Final = "demeter_images"
INDEXES: Final = (
    ("ix_demeter_images_session", ["session_id", "bucket", "key"]),
    ("ix_demeter_images_state_updated", ["state", "updated_at"]),
    ("ix_demeter_images_parent", ["parent_id"]),
    ("ix_demeter_images_thumbnail", ["bucket", "thumbnail_key"]),
)


def upgrade() -> None:
    """Create the table and its indexes, or what of them a pre-migration table lacks."""
    present: set[str] = set()
    if context.is_offline_mode() or not sa.inspect(op.get_bind()).has_table(TABLE):
        op.create_table(
            TABLE,
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
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("parent_id", sa.Uuid(), nullable=True),
            sa.Column("thumbnail_key", sa.String(1024), nullable=True),
            sa.Column("user_metadata", sa.JSON(), nullable=False),
            sa.Column("upload_expires_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("claimed_by", sa.String(64), nullable=True),
            sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
            sa.ForeignKeyConstraint(
                ["parent_id"], [f"{TABLE}.image_id"], name="fk_demeter_images_parent"
            ),
            sa.UniqueConstraint("bucket", "key", name="uq_demeter_images_bucket_key"),
        )
    else:
        present = {index["name"] or "" for index in sa.inspect(op.get_bind()).get_indexes(TABLE)}
    for name, columns in INDEXES:
        if name not in present:
            op.create_index(name, TABLE, columns)


def downgrade() -> None:
    """Drop the table, its indexes and every record in it."""
    op.drop_table(TABLE)
