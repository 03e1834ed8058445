"""Claim index in claim order: (state, priority descending, id).

A claim takes the READY job of highest priority, then the oldest; the j0001 index
(state, priority, id) cannot give that order (priority down, id up), so every claim
sorted all READY jobs.  With this one a claim reads the first index entry.

Revision ID: j0002
Revises: j0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "j0002"
down_revision = "j0001"
branch_labels = None
depends_on = None

TABLE = "ledgerflow_jobs"
OLD = f"ix_{TABLE}_state_priority_id"
NEW = f"ix_{TABLE}_claim_order"


def upgrade() -> None:
    """Replace the claim index by one in claim order."""
    op.create_index(NEW, TABLE, ["state", sa.text("priority DESC"), "id"])
    op.drop_index(OLD, table_name=TABLE)


def downgrade() -> None:
    """Put the j0001 index back."""
    op.create_index(OLD, TABLE, ["state", "priority", "id"])
    op.drop_index(NEW, table_name=TABLE)
