"""The ownership compare-and-sets of ``persistence.ownership`` as single SQL UPDATEs.

Each change is one UPDATE whose WHERE is the whole condition, so two takers racing
for one flow cannot both win.  On PostgreSQL and MariaDB/MySQL "now" is the server's
clock (``now()``, ``UTC_TIMESTAMP(6)``): a client whose clock runs ahead cannot cut
another host's lease short.  SQLite has no server: this host's clock, bound as a value.

The statements are built once per dialect and shape of change, with bound parameters
(building the take's UPDATE on each call cost more than running it).
"""

from __future__ import annotations

import functools
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, bindparam, func

from ledgerflow.models import utcnow
from ledgerflow.persistence.ownership import OwnChange, Ownership
from ledgerflow.persistence.sql.tables import FLOWS, UTCDateTime

__all__ = ["change", "read", "take"]

_SERVERS = ("postgresql", "mysql", "mariadb")


def _now(dialect: str) -> sa.ColumnElement[Any]:
    if dialect == "postgresql":
        return func.now()
    if dialect in ("mysql", "mariadb"):
        return func.utc_timestamp(6)
    return bindparam("b_now", type_=UTCDateTime())


def _later(dialect: str) -> sa.ColumnElement[Any]:
    """``lease`` seconds after now (bound as each server takes it; SQLite: the moment)."""
    if dialect == "postgresql":
        return func.now() + bindparam("b_lease", type_=sa.Interval())
    if dialect in ("mysql", "mariadb"):
        micros = bindparam("b_lease", type_=sa.Integer())
        return func.timestampadd(sa.text("MICROSECOND"), micros, func.utc_timestamp(6))
    return bindparam("b_lease", type_=UTCDateTime())


def _params(dialect: str, flow_uuid: str, change: OwnChange) -> dict[str, Any]:
    """The bound values of the statement applying ``change`` (see ``_statement``)."""
    params: dict[str, Any] = {"w_uuid": flow_uuid}
    if change.kind == "request":
        params["b_request"] = change.request
        return params
    params["w_fence"] = change.fence
    if change.kind in ("take", "renew"):
        params["b_owner"] = change.owner
        lease = timedelta(seconds=change.lease)
        if dialect == "postgresql":
            params["b_lease"] = lease
        elif dialect in ("mysql", "mariadb"):
            params["b_lease"] = round(change.lease * 1_000_000)
        else:
            now = utcnow()
            params["b_lease"] = now + lease
            if change.kind == "take" and not change.force:
                params["b_now"] = now
    return params


def read(conn: Connection, flow_uuid: str) -> Ownership | None:
    """The flow's ownership columns and the store's clock, or None if there is no such flow."""
    dialect = conn.dialect.name
    params: dict[str, Any] = {"w_uuid": flow_uuid}
    if dialect not in _SERVERS:
        params["b_now"] = utcnow()
    row = conn.execute(_read(dialect), params).one_or_none()
    if row is None:
        return None
    state, owner, fence, lease, request, moment = row
    return Ownership(flow_uuid, state, owner, int(fence), lease, request, moment)


def change(conn: Connection, flow_uuid: str, change: OwnChange) -> bool:
    """Apply ``change`` in one UPDATE; whether it held."""
    dialect = conn.dialect.name
    statement = _statement(dialect, change.kind, change.force, change.clear_cancel,
                           change.request == "cancel")  # fmt: skip
    result = conn.execute(statement, _params(dialect, flow_uuid, change))
    return bool(result.rowcount == 1)


def take(conn: Connection, flow_uuid: str, change: OwnChange) -> Ownership | None:
    """Apply the take ``change`` in one UPDATE ... RETURNING: the ownership it left, or None.

    For servers that return updated rows (PostgreSQL): the owner, the new fence and a
    request stored before the take (a cancel is kept) come back with the compare-and-set,
    so nothing needs reading again.  ``now`` is the server's clock of that statement.
    """
    dialect = conn.dialect.name
    row = conn.execute(_take(dialect, change.force), _params(dialect, flow_uuid, change))
    found = row.one_or_none()
    if found is None:
        return None
    state, owner, fence, lease, request, moment = found
    return Ownership(flow_uuid, state, owner, int(fence), lease, request, moment)


def _ownership_columns(dialect: str) -> tuple[sa.ColumnElement[Any], ...]:
    c = FLOWS.c
    now = sa.type_coerce(_now(dialect), UTCDateTime()).label("now")
    return (c.state, c.owner, c.fence, c.lease_expires_at, c.request, now)


@functools.cache
def _read(dialect: str) -> sa.Select[Any]:
    return sa.select(*_ownership_columns(dialect)).where(FLOWS.c.uuid == bindparam("w_uuid"))


@functools.cache
def _take(dialect: str, force: bool) -> sa.Update:
    statement = _statement(dialect, "take", force, False, False)
    return statement.returning(*_ownership_columns(dialect))


@functools.cache
def _statement(dialect: str, kind: str, force: bool, clear_cancel: bool, cancel: bool) -> sa.Update:
    """The UPDATE applying a change of ``kind``: its WHERE is the whole condition."""
    c = FLOWS.c
    statement = FLOWS.update().where(c.uuid == bindparam("w_uuid"))
    if kind == "request":
        if not cancel:
            statement = statement.where(c.owner.is_not(None), c.request.is_(None))
        return statement.values(request=bindparam("b_request"))
    statement = statement.where(c.fence == bindparam("w_fence"))
    if kind == "take":
        if not force:
            statement = statement.where(
                sa.or_(c.owner.is_(None), c.lease_expires_at <= _now(dialect))
            )
        return statement.values(
            owner=bindparam("b_owner"),
            fence=c.fence + 1,
            lease_expires_at=_later(dialect),
            request=sa.case((c.request == "cancel", c.request), else_=sa.null()),
        )
    if kind == "renew":
        return statement.where(c.owner == bindparam("b_owner")).values(
            lease_expires_at=_later(dialect)
        )
    keep = (
        sa.null() if clear_cancel else sa.case((c.request == "cancel", c.request), else_=sa.null())
    )
    return statement.values(owner=None, lease_expires_at=None, request=keep)
