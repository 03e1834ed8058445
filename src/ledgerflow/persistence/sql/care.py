"""Store care in SQL: row-by-row check, SQLite's integrity check, and purge by DELETE batches.

``scan`` reads each table in pages by its surrogate ``id`` with the column types'
result processing applied per row, so one undecodable value names its row instead
of failing the page.  ``purge`` walks the books in windows of ``policy.batch`` ids
and removes the purgeable ones with ONE DELETE per window whose WHERE clause holds
the whole rule (see ``persistence.care``): a flow that moved on between windows
keeps its book, and the flows and tasks go by ON DELETE CASCADE in the same
statement.  A dry run counts with the same WHERE clause.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy import Connection as SAConnection
from sqlalchemy import bindparam, func
from sqlalchemy.types import NullType

from ledgerflow.errors import CorruptRecordError, LedgerflowError
from ledgerflow.persistence import care, records
from ledgerflow.persistence.care import Damage, PurgePolicy
from ledgerflow.persistence.records import Kind
from ledgerflow.persistence.sql.fastpath import PreparedSelect, fetch_dicts
from ledgerflow.persistence.sql.tables import BOOKS, FLOWS, FORMAT_DEFAULT, TABLES, UTCDateTime

if TYPE_CHECKING:
    from ledgerflow.persistence.sql.backend import SQLConnection

__all__ = ["integrity_problems", "purge", "scan"]

#: Rows per page of ``scan``.
SCAN_PAGE: Final = 2000


def _page_select(kind: Kind, raw: bool) -> sa.Select[Any]:
    """A page of rows of ``kind`` by id; ``raw``: without result processing (done per row)."""
    table = TABLES[kind]
    columns = [
        sa.type_coerce(table.c[name], NullType()).label(name) if raw else table.c[name]
        for name in records.COLUMNS[kind]
    ]
    return (
        sa.select(table.c.id, table.c.format, *columns)
        .where(table.c.id > bindparam("after", type_=sa.Integer))
        .order_by(table.c.id)
        .limit(bindparam("page", type_=sa.Integer, literal_execute=True))
    )


_PAGES: Final = {kind: _page_select(kind, raw=True) for kind in TABLES}
#: What the decoding of a stored value raises when the value is not what its column holds.
_UNREADABLE: Final = (ValueError, TypeError, OverflowError, AttributeError)


def scan(conn: SQLConnection, kind: Kind) -> Iterator[care.ScanItem]:
    """Every row of ``kind``, a page at a time; ``where`` is its table and id.

    A page is read as any SELECT reads it; only a page with a value that will not decode
    is read again raw and decoded row by row, so the broken row is named.
    """
    table = TABLES[kind]
    after = 0
    while True:
        params = {"after": after, "page": SCAN_PAGE}
        items: list[tuple[dict[str, Any] | None, str | None]]
        with conn._reading() as sa_conn:
            if sa_conn is None:
                return
            try:
                rows = _fast_page(sa_conn, kind, after)
                items = [(row, _format_problem(row)) for row in rows]
            except (*_UNREADABLE, CorruptRecordError):  # a bad value: read raw, row by row
                processors = _processors(kind, sa_conn.dialect)
                raw = [dict(row) for row in sa_conn.execute(_PAGES[kind], params).mappings()]
                rows = raw
                items = [_decode(row, processors) for row in raw]
        for row, (decoded, problem) in zip(rows, items, strict=True):
            after = row["id"]
            yield f"table {table.name}, row id {row['id']}", decoded, problem
        if len(rows) < SCAN_PAGE:
            return


def _fast_page(sa_conn: SAConnection, kind: Kind, after: int) -> list[dict[str, Any]]:
    """A page as plain driver tuples, times converted column by column (see ``fastpath``)."""
    table = TABLES[kind]
    names = ["id", "format", *records.COLUMNS[kind]]
    statement = (
        sa.select(*(table.c[name] for name in names))
        .where(table.c.id > int(after))
        .order_by(table.c.id)
        .limit(SCAN_PAGE)
    )
    dialect = sa_conn.dialect
    sql = str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    types = [table.c[name].type for name in names]
    converters = [
        (index, PreparedSelect._time_converter(column_type, dialect))
        for index, column_type in enumerate(types)
        if isinstance(column_type, UTCDateTime)
    ]
    return fetch_dicts(sa_conn, sql, (), names, converters)


def _format_problem(row: dict[str, Any]) -> str | None:
    if row.get("format") != FORMAT_DEFAULT:
        return f"stored in format {row.get('format')!r}, which this version cannot read"
    return None


def _processors(kind: Kind, dialect: sa.Dialect) -> dict[str, Callable[[Any], Any] | None]:
    table = TABLES[kind]
    # The processors a normal SELECT applies (the dialect's, under our UTCDateTime).
    return {
        name: table.c[name].type._cached_result_processor(dialect, None)
        for name in records.COLUMNS[kind]
    }


def _decode(
    raw: dict[str, Any], processors: dict[str, Callable[[Any], Any] | None]
) -> tuple[dict[str, Any] | None, str | None]:
    problem = _format_problem(raw)
    if problem is not None:
        return raw, problem
    row: dict[str, Any] = {}
    for name, process in processors.items():
        try:
            row[name] = raw[name] if process is None else process(raw[name])
        except _UNREADABLE as exc:
            return {"uuid": raw.get("uuid")}, f"{name} is not readable: {exc}"
    return row, None


def integrity_problems(conn: SQLConnection) -> Iterator[Damage]:
    """SQLite's ``PRAGMA integrity_check``: one Damage per line it reports (none on servers)."""
    address = conn._address
    if address.backend_name != "sqlite" or address.memory:
        return
    where = address.where
    try:
        with conn._reading() as sa_conn:
            if sa_conn is None:
                return
            lines = [str(row[0]) for row in sa_conn.exec_driver_sql("PRAGMA integrity_check")]
    except LedgerflowError as exc:
        yield Damage(None, None, where, str(exc))
        return
    for line in lines:
        if line != "ok":
            yield Damage(None, None, where, f"integrity check: {line}")


def _blocking_flow(policy: PurgePolicy) -> sa.ColumnElement[bool]:
    """A flow of the book that keeps it: not ended in the states before the cutoff, or owned."""
    keep = sa.or_(FLOWS.c.state.not_in(sorted(policy.states)), FLOWS.c.updated_at >= policy.cutoff)
    if "owner" in FLOWS.c:  # flows carry an owner once engines take leases on them
        keep = sa.or_(keep, FLOWS.c.owner.is_not(None))
    return keep


def _purgeable(policy: PurgePolicy, low: int, high: int, kept: list[str]) -> sa.ColumnElement[bool]:
    of_book = FLOWS.c.book_uuid == BOOKS.c.uuid
    condition = sa.and_(
        BOOKS.c.id > low,
        BOOKS.c.id <= high,
        sa.exists().where(of_book),
        ~sa.exists().where(of_book, _blocking_flow(policy)),
    )
    if kept:
        condition = sa.and_(condition, BOOKS.c.uuid.not_in(kept))
    return condition


_WINDOW: Final = (
    sa.select(BOOKS.c.id, BOOKS.c.uuid)
    .where(BOOKS.c.id > bindparam("after", type_=sa.Integer))
    .order_by(BOOKS.c.id)
    .limit(bindparam("page", type_=sa.Integer, literal_execute=True))
)


def purge(conn: SQLConnection, policy: PurgePolicy, progress: care.Progress | None) -> int:
    """Remove (or count) the purgeable books, one DELETE per window of ``policy.batch`` books."""
    total = conn.count_logbooks()
    after, done, purged = 0, 0, 0
    while True:
        with conn._reading() as sa_conn:
            window = (
                []
                if sa_conn is None
                else list(sa_conn.execute(_WINDOW, {"after": after, "page": policy.batch}))
            )
        if not window:
            return purged
        high = int(window[-1][0])
        kept = (
            sorted(care.guarded(conn, [str(row[1]) for row in window])) if care.BOOK_GUARDS else []
        )
        purged += _purge_window(conn, policy, after, high, kept)
        after, done = high, done + len(window)
        if progress is not None:
            progress(done, total)
        if len(window) < policy.batch:
            return purged


def _purge_window(
    conn: SQLConnection, policy: PurgePolicy, low: int, high: int, kept: list[str]
) -> int:
    condition = _purgeable(policy, low, high, kept)
    if policy.dry_run:
        with conn._reading() as sa_conn:
            assert sa_conn is not None
            return int(
                sa_conn.execute(
                    sa.select(func.count()).select_from(BOOKS).where(condition)
                ).scalar_one()
            )
    with conn._transaction():
        return int(conn._writer().execute(BOOKS.delete().where(condition)).rowcount)
