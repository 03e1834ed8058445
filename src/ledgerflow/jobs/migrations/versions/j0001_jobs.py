"""Job table: one row per job, claimed by priority then posting order.

Revision ID: j0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "j0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copies of the column types as of this revision (never import ledgerflow here).
KEY = sa.String(255).with_variant(
    mysql.VARCHAR(255, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
)
TEXT = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
SURROGATE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
TABLE = "ledgerflow_jobs"


def upgrade() -> None:
    """Create the job table and the indexes claims and listings use."""
    op.create_table(
        TABLE,
        sa.Column("id", SURROGATE, primary_key=True, autoincrement=True),
        sa.Column("uuid", KEY, nullable=False),
        sa.Column("name", KEY, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("book_uuid", KEY, nullable=False),
        sa.Column("flow_uuid", KEY, nullable=False),
        sa.Column("priority", sa.BigInteger(), nullable=False),
        sa.Column("key", KEY),
        sa.Column("held_key", KEY),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("owner", KEY),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("available_at", TIMESTAMP, nullable=False),
        sa.Column("claim_expires_at", TIMESTAMP),
        sa.Column("last_error", TEXT),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=f"pk_{TABLE}"),
        sa.UniqueConstraint("uuid", name=f"uq_{TABLE}_uuid"),
        sa.UniqueConstraint("held_key", name=f"uq_{TABLE}_held_key"),
    )
    op.create_index(f"ix_{TABLE}_state_priority_id", TABLE, ["state", "priority", "id"])
    op.create_index(f"ix_{TABLE}_flow_uuid", TABLE, ["flow_uuid"])
    op.create_index(f"ix_{TABLE}_book_uuid", TABLE, ["book_uuid"])


def downgrade() -> None:
    """Drop the job table."""
    op.drop_table(TABLE)
