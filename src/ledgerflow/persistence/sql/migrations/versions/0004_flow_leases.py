"""Ownership of a running flow: owner, fence, lease and a pending request per flow detail.

Frozen history: the column types are spelled out here, not imported from ``tables``.
Existing flows read as never owned (fence 0, no owner, no lease, no request).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

FLOWS = "ledgerflow_flow_details"
_KEY = sa.String(255).with_variant(
    mysql.VARCHAR(255, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
)
_TIME = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    """Add the four ownership columns to the flow table."""
    op.add_column(FLOWS, sa.Column("owner", _KEY))
    op.add_column(FLOWS, sa.Column("fence", sa.Integer(), nullable=False, server_default="0"))
    op.add_column(FLOWS, sa.Column("lease_expires_at", _TIME))
    op.add_column(FLOWS, sa.Column("request", sa.String(16)))


def downgrade() -> None:
    """Drop them again."""
    with op.batch_alter_table(FLOWS) as batch:
        for column in ("request", "lease_expires_at", "fence", "owner"):
            batch.drop_column(column)
