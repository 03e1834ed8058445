"""Add ``tries`` to task details: one JSON entry per try (attempt, times, state, failure).

Rows written before hold NULL, read back as no tries.  The column is written in the
same UPDATE as the state change that ends a try, so recording tries adds no commit.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TASKS = "ledgerflow_task_details"


def upgrade() -> None:
    """Add the nullable ``tries`` column (LONGTEXT on MySQL/MariaDB, as the other values)."""
    json_text = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
    op.add_column(TASKS, sa.Column("tries", json_text, nullable=True))


def downgrade() -> None:
    """Drop it again (the tries recorded are lost); batch mode rebuilds the table on SQLite."""
    with op.batch_alter_table(TASKS) as batch:
        batch.drop_column("tries")
