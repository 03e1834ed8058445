"""The ownership compare-and-sets of ``persistence.ownership`` as single SQL UPDATEs.

Each change is one UPDATE whose WHERE is the whole condition, so two takers racing
for one flow cannot both win.  On PostgreSQL and MariaDB/MySQL "now" is the server's
clock (``now()``, ``UTC_TIMESTAMP(6)``): a client whose clock runs ahead cannot cut
another host's lease short.  SQLite has no server: this host's clock, bound as a value.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, func

from ledgerflow.models import utcnow
from ledgerflow.persistence.ownership import OwnChange, Ownership
from ledgerflow.persistence.sql.tables import FLOWS, UTCDateTime

__all__ = ["change", "read", "take"]


def _now(dialect: str) -> sa.ColumnElement[Any]:
    if dialect == "postgresql":
        return func.now()
    if dialect in ("mysql", "mariadb"):
        return func.utc_timestamp(6)
    return sa.literal(utcnow(), UTCDateTime())


def _later(dialect: str, seconds: float) -> sa.ColumnElement[Any]:
    if dialect == "postgresql":
        return func.now() + sa.literal(timedelta(seconds=seconds), sa.Interval())
    if dialect in ("mysql", "mariadb"):
        micros = round(seconds * 1_000_000)
        return func.timestampadd(sa.text("MICROSECOND"), micros, func.utc_timestamp(6))
    return sa.literal(utcnow() + timedelta(seconds=seconds), UTCDateTime())


def read(conn: Connection, flow_uuid: str) -> Ownership | None:
    """The flow's ownership columns and the store's clock, or None if there is no such flow."""
    now = sa.type_coerce(_now(conn.dialect.name), UTCDateTime()).label("now")
    statement = sa.select(
        FLOWS.c.state, FLOWS.c.owner, FLOWS.c.fence, FLOWS.c.lease_expires_at, FLOWS.c.request, now
    ).where(FLOWS.c.uuid == flow_uuid)
    row = conn.execute(statement).one_or_none()
    if row is None:
        return None
    state, owner, fence, lease, request, moment = row
    return Ownership(flow_uuid, state, owner, int(fence), lease, request, moment)


def change(conn: Connection, flow_uuid: str, change: OwnChange) -> bool:
    """Apply ``change`` in one UPDATE; whether it held."""
    return bool(conn.execute(_statement(conn.dialect.name, flow_uuid, change)).rowcount == 1)


def take(conn: Connection, flow_uuid: str, change: OwnChange) -> Ownership | None:
    """Apply the take ``change`` in one UPDATE ... RETURNING: the ownership it left, or None.

    For servers that return updated rows (PostgreSQL): the owner, the new fence and a
    request stored before the take (a cancel is kept) come back with the compare-and-set,
    so nothing needs reading again.  ``now`` is the server's clock of that statement.
    """
    dialect = conn.dialect.name
    now = sa.type_coerce(_now(dialect), UTCDateTime()).label("now")
    c = FLOWS.c
    statement = _statement(dialect, flow_uuid, change).returning(
        c.state, c.owner, c.fence, c.lease_expires_at, c.request, now
    )
    row = conn.execute(statement).one_or_none()
    if row is None:
        return None
    state, owner, fence, lease, request, moment = row
    return Ownership(flow_uuid, state, owner, int(fence), lease, request, moment)


def _statement(dialect: str, flow_uuid: str, change: OwnChange) -> sa.Update:
    """The UPDATE applying ``change``: its WHERE is the whole condition."""
    c = FLOWS.c
    statement = FLOWS.update().where(c.uuid == flow_uuid)
    if change.kind == "request":
        if change.request != "cancel":
            statement = statement.where(c.owner.is_not(None), c.request.is_(None))
        statement = statement.values(request=change.request)
    else:
        statement = statement.where(c.fence == change.fence)
    if change.kind == "take":
        if not change.force:
            statement = statement.where(
                sa.or_(c.owner.is_(None), c.lease_expires_at <= _now(dialect))
            )
        statement = statement.values(
            owner=change.owner,
            fence=c.fence + 1,
            lease_expires_at=_later(dialect, change.lease),
            request=sa.case((c.request == "cancel", c.request), else_=sa.null()),
        )
    elif change.kind == "renew":
        statement = statement.where(c.owner == change.owner).values(
            lease_expires_at=_later(dialect, change.lease)
        )
    elif change.kind == "release":
        keep = (
            sa.null()
            if change.clear_cancel
            else sa.case((c.request == "cancel", c.request), else_=sa.null())
        )
        statement = statement.values(owner=None, lease_expires_at=None, request=keep)
    return statement
