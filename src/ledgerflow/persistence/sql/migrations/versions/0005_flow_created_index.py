"""Index flow details on ``(created_at, uuid)``: the keyset order of ``ledgerflow flows``.

Flow listings run newest first by ``(created_at, uuid)`` and page with a cursor on
that key; without this index each page sorted every flow row, so page 2,000 cost
far more than page 1 (``benchmarks/web_bench.py`` measures both).  Flows are
created once and ``created_at`` never changes, so the index costs no write on the
engine's hot path (state changes update other columns).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

FLOWS = "ledgerflow_flow_details"
INDEX = f"ix_{FLOWS}_created_at_uuid"


def upgrade() -> None:
    """Create the (created_at, uuid) index of the flow table."""
    op.create_index(INDEX, FLOWS, ["created_at", "uuid"])


def downgrade() -> None:
    """Drop it again."""
    op.drop_index(INDEX, table_name=FLOWS)
