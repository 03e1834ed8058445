"""Who holds a flow and what that means now: its lease, and RUNNING flows nobody runs.

A flow's owner, fence and lease expiry are stored on its record; whether the owner
still runs it is read here, at view time ("gone": its process on this host died).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from ledgerflow import states
from ledgerflow.engine import identity
from ledgerflow.models import FlowDetail
from ledgerflow.persistence.base import Connection
from ledgerflow.persistence.primitives import RecordConnection

__all__ = ["ORPHAN_SCAN", "Lease", "lease_of", "orphaned_counts"]


@dataclass(frozen=True)
class Lease:
    """Who holds a flow: its owner, fence and lease, and what that means now."""

    owner: str | None
    fence: int
    expires_at: datetime | None
    status: str  # "free", "held", "expired" or "gone" (its process on this host died)

    def describe(self) -> str:
        """One line for people: 'free', 'held by X until T', ..."""
        if self.owner is None:
            return "free" if not self.fence else f"free (taken {self.fence} times)"
        until = "" if self.expires_at is None else f" until {self.expires_at:%Y-%m-%d %H:%M:%S}Z"
        return {
            "held": f"held by {self.owner}{until}",
            "expired": f"{self.owner}: lease expired{until.replace(' until', ' at')}",
            "gone": f"{self.owner}: owner process is gone",
        }[self.status]


def lease_of(flow: FlowDetail, now: datetime | None = None) -> Lease:
    """The flow's ownership and what it means now ("gone": its process on this host died)."""
    return _lease(flow.uuid, flow.owner, flow.fence, flow.lease_expires_at, now)


def _lease(
    flow_uuid: str, owner: str | None, fence: int, expires: datetime | None, now: datetime | None
) -> Lease:
    now = now or datetime.now(UTC)
    if owner is None:
        status = "free"
    elif identity.is_gone(owner, flow_uuid):
        status = "gone"
    elif expires is not None and expires <= now:
        status = "expired"
    else:
        status = "held"
    return Lease(owner, fence, expires, status)


def orphaned_counts(conn: Connection, book_uuids: set[str]) -> dict[str, int]:
    """Per book uuid, how many of its RUNNING flows nobody runs any more.

    The built-in stores read the flow rows of just these books (one query, nothing
    decoded but the rows' own fields); another store's RUNNING flows are scanned,
    newest first, up to ``ORPHAN_SCAN``.  A corrupt flow row counts as not orphaned.
    """
    counts: dict[str, int] = {}
    now = datetime.now(UTC)
    if isinstance(conn, RecordConnection):
        rows = conn._fetch_many("flow", parents=sorted(book_uuids))
        found = [(row["book_uuid"], row) for row in rows if row["state"] == states.RUNNING]
        for book_uuid, row in found:
            lease = _lease(row["uuid"], row["owner"], row["fence"], row["lease_expires_at"], now)
            if lease.status != "held":
                counts[book_uuid] = counts.get(book_uuid, 0) + 1
        return counts
    for book_uuid, flow in conn.list_flows(state=states.RUNNING, limit=ORPHAN_SCAN):
        if book_uuid in book_uuids and lease_of(flow, now).status != "held":
            counts[book_uuid] = counts.get(book_uuid, 0) + 1
    return counts


#: RUNNING flows looked at (newest first) to tell which books have one nobody runs.
ORPHAN_SCAN = 10_000
