"""Who owns a running flow: the ownership columns of a flow row and the changes to them.

A flow row carries ``owner`` (``host:pid:start`` of the engine holding it, or None),
``fence`` (+1 at every take), ``lease_expires_at`` (until when the owner holds it
without a heartbeat) and ``request`` (a pending ``"suspend"`` or ``"cancel"``).  Only
the four changes below write them, each a compare-and-set on the row:

``take``     fence == expected and (no owner, lease run out, or ``force``: the owner is
             known dead) -> owner = me, fence + 1, lease = now + seconds; a pending
             suspend request is dropped (the run it was meant for is over), a cancel kept
``renew``    fence == mine and owner == me -> lease = now + seconds
``release``  fence == mine -> no owner, no lease; the request is dropped (a cancel only
             with ``clear_cancel``: once the flow is CANCELLED)
``request``  suspend: only while someone owns the flow and no request is pending;
             cancel: always (it wins over a pending suspend)

"now" is the store's clock where the store is a server (PostgreSQL, MariaDB), so
clock skew between hosts cannot shorten a lease; elsewhere it is this host's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal

__all__ = ["REQUESTS", "OwnChange", "Ownership", "allowed", "changes"]

REQUESTS: Final = ("suspend", "cancel")
ChangeKind = Literal["take", "renew", "release", "request"]


@dataclass(frozen=True)
class Ownership:
    """The ownership columns of one flow row, its state, and the store's clock."""

    flow_uuid: str
    state: str
    owner: str | None
    fence: int
    lease_expires_at: datetime | None
    request: str | None
    now: datetime

    @property
    def expired(self) -> bool:
        """Whether nobody holds the flow or the owner's lease ran out (by the store's clock)."""
        return self.owner is None or (
            self.lease_expires_at is not None and self.lease_expires_at <= self.now
        )


@dataclass(frozen=True)
class OwnChange:
    """One compare-and-set on a flow's ownership columns (see the module docstring)."""

    kind: ChangeKind
    fence: int = 0
    owner: str | None = None
    lease: float = 0.0
    force: bool = False
    request: str | None = None
    clear_cancel: bool = False


def allowed(change: OwnChange, row: dict[str, Any], now: datetime) -> bool:
    """Whether ``change`` applies to a flow ``row`` at ``now`` (stores without a server)."""
    if change.kind == "request":
        if change.request == "cancel":
            return True
        return row["owner"] is not None and row["request"] is None
    if row["fence"] != change.fence:
        return False
    if change.kind == "take":
        lease = row["lease_expires_at"]
        return change.force or row["owner"] is None or (lease is not None and lease <= now)
    if change.kind == "renew":
        return bool(row["owner"] == change.owner)
    return True


def changes(change: OwnChange, row: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The column values ``change`` writes to ``row`` at ``now``."""
    lease = now + timedelta(seconds=change.lease)
    if change.kind == "take":
        request = row["request"] if row["request"] == "cancel" else None
        return {
            "owner": change.owner,
            "fence": row["fence"] + 1,
            "lease_expires_at": lease,
            "request": request,
        }
    if change.kind == "renew":
        return {"lease_expires_at": lease}
    if change.kind == "release":
        keep = row["request"] == "cancel" and not change.clear_cancel
        return {
            "owner": None,
            "lease_expires_at": None,
            "request": row["request"] if keep else None,
        }
    return {"request": change.request}
