"""The SELECTs behind listings: filters, keyset order, and the per-book/per-flow GROUP BYs.

Statements are built from the caller's filters (a connection is passed where a
dialect needs its own spelling); the GROUP BYs are built once and take their keys
as the expanding ``:keys`` parameter.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import Connection as SAConnection
from sqlalchemy import bindparam, func

from ledgerflow.persistence import records
from ledgerflow.persistence.listing import Cursor
from ledgerflow.persistence.records import Kind
from ledgerflow.persistence.sql.tables import BOOKS, FLOWS, TABLES, TASKS

__all__ = [
    "CHILD_KEYS",
    "FLOW_STATES",
    "TASK_STATES",
    "TIME_SPANS",
    "books",
    "columns",
    "flows",
    "keyset",
]


def columns(kind: Kind) -> list[sa.Column[Any]]:
    """The row's columns of ``kind`` in storage order, then ``format``."""
    table = TABLES[kind]
    return [table.c[name] for name in records.COLUMNS[kind]] + [table.c.format]


def _keys() -> sa.BindParameter[list[str]]:
    return bindparam("keys", expanding=True)


#: (book uuid, task state, count) for the books in ``:keys``.
TASK_STATES: Final = (
    sa.select(FLOWS.c.book_uuid, TASKS.c.state, func.count())
    .select_from(TASKS.join(FLOWS, TASKS.c.flow_uuid == FLOWS.c.uuid))
    .where(FLOWS.c.book_uuid.in_(_keys()))
    .group_by(FLOWS.c.book_uuid, TASKS.c.state)
)
#: (book uuid, flow state, count) for the books in ``:keys``.
FLOW_STATES: Final = (
    sa.select(FLOWS.c.book_uuid, FLOWS.c.state, func.count())
    .where(FLOWS.c.book_uuid.in_(_keys()))
    .group_by(FLOWS.c.book_uuid, FLOWS.c.state)
)
#: (flow uuid, first task start, last task finish) for the flows in ``:keys``.
TIME_SPANS: Final = (
    sa.select(TASKS.c.flow_uuid, func.min(TASKS.c.started_at), func.max(TASKS.c.finished_at))
    .where(TASKS.c.flow_uuid.in_(_keys()))
    .group_by(TASKS.c.flow_uuid)
)

#: Per kind, (parent uuid, uuid) of the rows under the parents in ``:keys``, insertion order.
CHILD_KEYS: Final = {
    kind: sa.select(table.c[key], table.c.uuid)
    .where(table.c[key].in_(_keys()))
    .order_by(table.c.id)
    for kind, table, key in (("flow", FLOWS, "book_uuid"), ("task", TASKS, "flow_uuid"))
}


def exactly(conn: SAConnection, column: sa.Column[Any], value: str) -> sa.ColumnElement[bool]:
    """``column == value`` as an exact match on every engine."""
    match = column == value
    if conn.dialect.name in ("mysql", "mariadb"):
        # PAD SPACE collations find "a " for "a": an exact match, as elsewhere.
        match = sa.and_(match, func.char_length(column) == len(value))
    return match


def has_prefix(column: sa.Column[Any], prefix: str) -> sa.ColumnElement[bool]:
    """Case-sensitive ``startswith`` (SQLite's LIKE ignores case, so no LIKE)."""
    return func.substr(column, 1, len(prefix)) == prefix


def books(
    conn: SAConnection, name: str | None, state: str | None, prefix: str | None, count_only: bool
) -> sa.Select[Any]:
    """Book rows (or their count) with that exact name, a flow in ``state``, a uuid prefix."""
    if count_only and state is not None and name is None and prefix is None:
        # Books with a flow in ``state``, from the (state, book_uuid) index alone,
        # instead of an EXISTS probe per book.
        distinct = sa.select(func.count(sa.distinct(FLOWS.c.book_uuid)))
        return distinct.where(FLOWS.c.state == state)
    statement = sa.select(func.count()) if count_only else sa.select(*columns("book"))
    statement = statement.select_from(BOOKS)
    if name is not None:
        statement = statement.where(exactly(conn, BOOKS.c.name, name))
    if state is not None:
        has_flow = sa.exists().where(FLOWS.c.book_uuid == BOOKS.c.uuid, FLOWS.c.state == state)
        statement = statement.where(has_flow)
    if prefix is not None:
        statement = statement.where(has_prefix(BOOKS.c.uuid, prefix))
    return statement


def flows(
    conn: SAConnection,
    name: str | None,
    state: str | None,
    since: datetime | None,
    prefix: str | None,
    count_only: bool,
) -> sa.Select[Any]:
    """Flow rows (or their count) filtered by exact name, state, creation time, uuid prefix."""
    statement = sa.select(*([func.count()] if count_only else columns("flow")))
    statement = statement.select_from(FLOWS)
    if name is not None:
        statement = statement.where(exactly(conn, FLOWS.c.name, name))
    if state is not None:
        statement = statement.where(FLOWS.c.state == state)
    if since is not None:
        statement = statement.where(FLOWS.c.created_at >= since)
    if prefix is not None:
        statement = statement.where(has_prefix(FLOWS.c.uuid, prefix))
    return statement


def keyset(
    conn: SAConnection,
    table: sa.Table,
    statement: sa.Select[Any],
    newest_first: bool,
    after: Cursor | None,
) -> sa.Select[Any]:
    """Order by (created_at, uuid) and, with a cursor, start past it: an index range scan."""
    uuid: sa.ColumnElement[Any] = table.c.uuid
    if conn.dialect.name == "postgresql":  # code-point order, as on every engine
        uuid = uuid.collate("C")
    created = table.c.created_at
    if after is not None:
        at, key = after
        # The first condition alone bounds a range of the (created_at, uuid) index on
        # every engine (an OR on its own made SQLite scan from the start: page 2,000
        # cost more than page 1); the second drops the cursor's own time up to its uuid.
        if newest_first:
            past = sa.and_(created <= at, sa.or_(created < at, uuid < key))
        else:
            past = sa.and_(created >= at, sa.or_(created > at, uuid > key))
        statement = statement.where(past)
    keys = [created, uuid]
    return statement.order_by(*(key.desc() if newest_first else key for key in keys))
