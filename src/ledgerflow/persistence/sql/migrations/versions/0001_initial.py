"""Initial schema: logbooks, flow details and task details.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql
from sqlalchemy.schema import SchemaItem

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copies of the column types as of this revision (never import ledgerflow here).
KEY = sa.String(255).with_variant(
    mysql.VARCHAR(255, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
)
JSON_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
SURROGATE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def _head() -> list[SchemaItem]:
    return [
        sa.Column("id", SURROGATE, primary_key=True, autoincrement=True),
        sa.Column("uuid", KEY, nullable=False),
    ]


def _tail(table: str) -> list[SchemaItem]:
    return [
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(16), nullable=False, server_default="json"),
        sa.PrimaryKeyConstraint("id", name=f"pk_{table}"),
        sa.UniqueConstraint("uuid", name=f"uq_{table}_uuid"),
    ]


def _parent(table: str, column: str, parent: str) -> SchemaItem:
    return sa.ForeignKeyConstraint(
        [column], [f"{parent}.uuid"], name=f"fk_{table}_{column}", ondelete="CASCADE"
    )


def upgrade() -> None:
    """Create the three tables and their indexes."""
    books, flows, tasks = (
        "ledgerflow_logbooks",
        "ledgerflow_flow_details",
        "ledgerflow_task_details",
    )
    op.create_table(
        books,
        *_head(),
        sa.Column("name", KEY, nullable=False),
        sa.Column("meta", JSON_TEXT),
        *_tail(books),
    )
    op.create_index(f"ix_{books}_name", books, ["name"])
    op.create_index(f"ix_{books}_created_at_uuid", books, ["created_at", "uuid"])
    op.create_index(f"ix_{books}_updated_at", books, ["updated_at"])

    op.create_table(
        flows,
        *_head(),
        sa.Column("book_uuid", KEY, nullable=False),
        sa.Column("name", KEY, nullable=False),
        sa.Column("type", KEY),
        sa.Column("state", KEY, nullable=False),
        sa.Column("meta", JSON_TEXT),
        *_tail(flows),
        _parent(flows, "book_uuid", books),
    )
    op.create_index(f"ix_{flows}_book_uuid_id", flows, ["book_uuid", "id"])
    op.create_index(f"ix_{flows}_state_book_uuid", flows, ["state", "book_uuid"])
    op.create_index(f"ix_{flows}_name", flows, ["name"])
    op.create_index(f"ix_{flows}_updated_at", flows, ["updated_at"])

    op.create_table(
        tasks,
        *_head(),
        sa.Column("flow_uuid", KEY, nullable=False),
        sa.Column("name", KEY, nullable=False),
        sa.Column("type", KEY),
        sa.Column("version", KEY, nullable=False),
        sa.Column("state", KEY, nullable=False),
        sa.Column("result", JSON_TEXT),
        sa.Column("failure", JSON_TEXT),
        sa.Column("revert_failure", JSON_TEXT),
        sa.Column("meta", JSON_TEXT),
        sa.Column("checkpoint", JSON_TEXT),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("started_at", TIMESTAMP),
        sa.Column("finished_at", TIMESTAMP),
        *_tail(tasks),
        _parent(tasks, "flow_uuid", flows),
    )
    op.create_index(f"ix_{tasks}_flow_uuid_id", tasks, ["flow_uuid", "id"])
    op.create_index(f"ix_{tasks}_name", tasks, ["name"])
    op.create_index(f"ix_{tasks}_updated_at", tasks, ["updated_at"])


def downgrade() -> None:
    """Drop everything (children first)."""
    for table in ("ledgerflow_task_details", "ledgerflow_flow_details", "ledgerflow_logbooks"):
        op.drop_table(table)
