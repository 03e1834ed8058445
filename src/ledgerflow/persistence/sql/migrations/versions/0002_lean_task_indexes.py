"""Drop the task-detail indexes on ``name`` and ``updated_at``.

No query reads task details by name or by time, yet every state change rewrote
both indexes: on SQLite a 1,000-task flow wrote 4.5 WAL pages per task instead of
1.3 (``benchmarks/sqlite_anatomy.py``), paid on every commit with ``synchronous=FULL``.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TASKS = "ledgerflow_task_details"


def upgrade() -> None:
    """Drop the two unused indexes of the task table."""
    op.drop_index(f"ix_{TASKS}_name", table_name=TASKS)
    op.drop_index(f"ix_{TASKS}_updated_at", table_name=TASKS)


def downgrade() -> None:
    """Recreate them as revision 0001 had them."""
    op.create_index(f"ix_{TASKS}_name", TASKS, ["name"])
    op.create_index(f"ix_{TASKS}_updated_at", TASKS, ["updated_at"])
