"""The host app's first table: orders, which may point at a photo by its image id.

Revision ID: host_0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "host_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("order_id", sa.Integer(), primary_key=True),
        sa.Column("photo_id", sa.Uuid(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("orders")
