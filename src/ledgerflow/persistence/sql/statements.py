"""The SQL statements of the row primitives, built once at import (bound parameters).

The hottest two, the compare-and-set UPDATE the engine runs per state change and the
bulk read of details, are also compiled once per process and kind of dialect (see
``fastpath``).  ``backend`` runs them; nothing here touches a connection.
"""

from __future__ import annotations

import threading
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import bindparam

from ledgerflow.persistence import records
from ledgerflow.persistence.records import Kind
from ledgerflow.persistence.sql import queries
from ledgerflow.persistence.sql.fastpath import PreparedSelect, PreparedUpdate
from ledgerflow.persistence.sql.tables import BOOKS, FLOWS, TABLES, TASKS

__all__ = [
    "DELETE_BOOK",
    "DELETE_TASKS",
    "FENCE",
    "INSERT",
    "NAMES",
    "REVISION",
    "SELECTS",
    "SETTABLE",
    "Releases",
    "Selects",
    "Updates",
    "prepared",
    "release_statement",
    "release_values",
    "update_statement",
]

NAMES: Final[dict[Kind, str]] = {"book": "logbook", "flow": "flow detail", "task": "task detail"}
PARENT_COLUMN: Final[dict[Kind, str]] = {"flow": "book_uuid", "task": "flow_uuid"}
#: Columns an update overwrites: all but the uuid, the parent, the revision and ownership.
KEPT: Final = ("uuid", "revision", "book_uuid", "flow_uuid", *records.OWNERSHIP_COLUMNS)
SETTABLE: Final[dict[Kind, tuple[str, ...]]] = {
    kind: tuple(c for c in records.COLUMNS[kind] if c not in KEPT) for kind in TABLES
}


def _keys() -> sa.BindParameter[list[str]]:
    return bindparam("keys", expanding=True)


def _select_by(kind: Kind, key: str) -> sa.Select[Any]:
    table = TABLES[kind]
    return sa.select(*queries.columns(kind)).where(table.c[key].in_(_keys())).order_by(table.c.id)


def update_statement(kind: Kind, checked: bool, fenced: bool = False) -> sa.Update:
    table = TABLES[kind]
    statement = table.update().where(table.c.uuid == bindparam("w_uuid"))
    if checked:  # compare-and-set: the revision check is part of the UPDATE itself
        statement = statement.where(table.c.revision == bindparam("w_revision"))
    if fenced and kind == "flow":
        statement = statement.where(table.c.fence == bindparam("w_fence"))
    elif fenced:
        # The fence check rides in the same statement: no extra round trip.  The shared
        # row lock (FOR SHARE / LOCK IN SHARE MODE) makes a taker's uncommitted take
        # wait for this write, or this read see its committed fence.
        fence = (
            sa.select(FLOWS.c.fence)
            .where(FLOWS.c.uuid == bindparam("w_flow"))
            .with_for_update(read=True)
            .scalar_subquery()
        )
        statement = statement.where(fence == bindparam("w_fence"))
    values: dict[str, Any] = {name: bindparam(name) for name in SETTABLE[kind]}
    return statement.values(**values, revision=table.c.revision + sa.literal_column("1"))


def release_statement(checked: bool, clear_cancel: bool) -> sa.Update:
    """The flow's fenced UPDATE that also lets go of it: ownership's "release", folded in.

    The fence in its WHERE is the release's condition too, so the flow's last write and
    its release land together or not at all, in one statement.  The request is dropped
    (a cancel only with ``clear_cancel``); the literal keeps the statement's binds those
    of the plain UPDATE.
    """
    return update_statement("flow", checked, fenced=True).values(**release_values(clear_cancel))


def release_values(clear_cancel: bool) -> dict[str, Any]:
    """What a release sets on the flow row: no owner, no lease, the request dropped.

    A cancel is kept unless ``clear_cancel``; the literal keeps the statement's binds
    those of the plain UPDATE.
    """
    request = FLOWS.c.request
    keep = (
        sa.null()
        if clear_cancel
        else sa.case((request == sa.literal_column("'cancel'"), request), else_=sa.null())
    )
    return {"owner": sa.null(), "lease_expires_at": sa.null(), "request": keep}


SELECTS: Final[dict[tuple[Kind, bool], sa.Select[Any]]] = {
    **{(kind, False): _select_by(kind, "uuid") for kind in TABLES},
    **{(kind, True): _select_by(kind, PARENT_COLUMN[kind]) for kind in ("flow", "task")},
}
REVISION: Final = {
    kind: sa.select(table.c.revision).where(table.c.uuid == bindparam("w_uuid"))
    for kind, table in TABLES.items()
}
INSERT: Final = {kind: table.insert() for kind, table in TABLES.items()}
FENCE: Final = sa.select(FLOWS.c.fence).where(FLOWS.c.uuid == bindparam("w_uuid"))
DELETE_BOOK: Final = BOOKS.delete().where(BOOKS.c.uuid == bindparam("w_uuid"))
DELETE_TASKS: Final = TASKS.delete().where(
    TASKS.c.uuid.in_(_keys()), TASKS.c.flow_uuid == bindparam("w_flow")
)

Updates = dict[tuple[Kind, bool, bool], PreparedUpdate]
#: (revision checked, cancel cleared) -> the flow's UPDATE that lets go of it.
Releases = dict[tuple[bool, bool], PreparedUpdate]
#: (kind, by parent) -> the bulk read; None where the driver's paramstyle is exotic.
Selects = dict[tuple[Kind, bool], PreparedSelect | None]
_PREPARED: dict[tuple[Any, ...], tuple[Updates, Selects, Releases]] = {}
__PREPAREDLOCK = threading.Lock()


def prepared(dialect: sa.Dialect) -> tuple[Updates, Selects, Releases]:
    """The hot statements compiled for ``dialect``, once per process and kind of dialect.

    Compiling them took most of opening a backend (``lf.resume(uri)`` opens one), and
    the SQL text depends only on the dialect class and its parameter style.
    """
    key = (type(dialect), dialect.paramstyle, dialect.positional)
    with __PREPAREDLOCK:
        found = _PREPARED.get(key)
        if found is not None:
            return found
        updates: Updates = {
            (kind, checked, fenced): PreparedUpdate(
                update_statement(kind, checked, fenced), dialect
            )
            for kind in TABLES
            for checked in (True, False)
            for fenced in (True, False)
        }
        releases: Releases = {
            (checked, clear_cancel): PreparedUpdate(
                release_statement(checked, clear_cancel), dialect
            )
            for checked in (True, False)
            for clear_cancel in (True, False)
        }
        selects: Selects = {}
        for (kind, by_parent), statement in SELECTS.items():
            try:
                selects[kind, by_parent] = PreparedSelect(statement, dialect)
            except ValueError:
                selects[kind, by_parent] = None
        _PREPARED[key] = (updates, selects, releases)
        return updates, selects, releases
