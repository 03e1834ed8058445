"""Statements compiled once per engine and run through ``exec_driver_sql``.

SQLAlchemy's ``execute()`` looks a statement up in its compiled cache, builds an
execution context and runs every value through its type's processor on each call.
On the two paths that dominate (one UPDATE per state change; loading thousands of
task rows) we keep the SQL text and do only the conversions that matter.  Both
still go through the SQLAlchemy connection, so events (query counting) and error
wrapping behave as for any other statement.
"""

from __future__ import annotations

import operator
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import Connection

from ledgerflow.persistence.sql.common import RECORD_NAMES, bad_time
from ledgerflow.persistence.sql.common import sqlite_time as _sqlite_time
from ledgerflow.persistence.sql.common import sqlite_time_text as _sqlite_time_text
from ledgerflow.persistence.sql.tables import TABLES, UTCDateTime

__all__ = ["PreparedSelect", "PreparedUpdate", "fetch_dicts"]

#: How each supported DBAPI paramstyle writes the i-th value of the IN list.
_MARKS: Final = {"qmark": "?", "format": "%s", "pyformat": "%(k{})s"}
#: The placeholder SQLAlchemy leaves for an expanding IN list at compile time.
_KEYS_PLACEHOLDER: Final = "(__[POSTCOMPILE_keys])"


class PreparedUpdate:
    """An UPDATE with named bind parameters; ``run`` returns the rowcount."""

    def __init__(self, statement: sa.Update, dialect: sa.Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self.direct = dialect.name == "sqlite"
        self.positional: Sequence[str] | None = compiled.positiontup
        self.processors = {
            name: processor
            for name, bind in compiled.binds.items()
            if (processor := _bind_processor(bind.type, dialect))
        }
        if self.positional:
            # Row -> parameter tuple in C, then convert only the few columns that need it.
            self._pick = operator.itemgetter(*self.positional)
            self._convert = [
                (index, self.processors[name])
                for index, name in enumerate(self.positional)
                if name in self.processors
            ]

    def run_sqlite(self, driver: sqlite3.Connection, row: dict[str, Any]) -> int:
        """Execute on the sqlite3 connection with ``row`` (bind names as keys); the rowcount.

        No SQLAlchemy in between: the caller owns the transaction and translates
        sqlite3 errors.  ``row`` is left as it was.
        """
        values = list(self._pick(row))
        for index, processor in self._convert:
            values[index] = processor(values[index])
        return driver.execute(self.sql, values).rowcount

    def run(self, conn: Connection, params: dict[str, Any]) -> int:
        """Execute with ``params`` (by bind name, converted in place); return the rowcount."""
        if self.direct:
            # SQLite runs in-process, so SQLAlchemy's execution context is most of the cost
            # of this UPDATE: send it to the driver's cursor.  SQLAlchemy events don't see
            # it; sqlite3 errors are translated by ``engines.translate_errors``.
            driver: sqlite3.Connection = conn.connection.driver_connection  # type: ignore[assignment]
            return self.run_sqlite(driver, params)
        for name, processor in self.processors.items():
            params[name] = processor(params[name])
        values: Any = (
            params if self.positional is None else tuple(params[n] for n in self.positional)
        )
        return conn.exec_driver_sql(self.sql, values).rowcount


def _bind_processor(type_: Any, dialect: sa.Dialect) -> Callable[[Any], Any] | None:
    if dialect.name == "sqlite" and isinstance(type_, UTCDateTime):
        return _sqlite_time_text
    processor: Callable[[Any], Any] | None = type_.dialect_impl(dialect).bind_processor(dialect)
    return processor


class PreparedSelect:
    """A SELECT whose only parameter is an IN list named ``keys``; rows come back as dicts."""

    def __init__(self, statement: sa.Select[Any], dialect: sa.Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        if _KEYS_PLACEHOLDER not in self.sql:
            raise ValueError(f"expected an expanding IN list named 'keys' in {self.sql}")
        if dialect.paramstyle not in _MARKS:
            raise ValueError(f"paramstyle {dialect.paramstyle!r} is not supported here")
        self.style = dialect.paramstyle
        self.names = [str(column.key) for column in statement.selected_columns]
        tables = {getattr(c, "table", None) for c in statement.selected_columns}
        kinds = {table.name: kind for kind, table in TABLES.items()}
        table = next(iter(tables)) if len(tables) == 1 else None
        #: What a corrupt row's message calls the record.
        self.what = (
            RECORD_NAMES[kinds[table.name]]
            if table is not None and table.name in kinds
            else "record"
        )
        self.converters: list[tuple[int, Callable[[Any], Any]]] = [
            (index, self._time_converter(column.type, dialect))
            for index, column in enumerate(statement.selected_columns)
            if isinstance(column.type, UTCDateTime)
        ]

    @staticmethod
    def _time_converter(type_: UTCDateTime, dialect: sa.Dialect) -> Callable[[Any], Any]:
        if dialect.name == "sqlite":
            return _sqlite_time
        driver = type_.dialect_impl(dialect).result_processor(dialect, None)
        if driver is None:
            return lambda value: type_.process_result_value(value, dialect)
        return lambda value: type_.process_result_value(driver(value), dialect)

    def fetch(self, conn: Connection, keys: Sequence[str]) -> list[dict[str, Any]]:
        """Run with ``keys`` as the IN list and return the rows as dicts."""
        mark = _MARKS[self.style]
        marks = ", ".join(mark.format(i) for i in range(len(keys)))
        params: Any = tuple(keys)
        if self.style == "pyformat":
            params = {f"k{i}": key for i, key in enumerate(keys)}
        sql = self.sql.replace(_KEYS_PLACEHOLDER, f"({marks})")
        return fetch_dicts(conn, sql, params, self.names, self.converters, self.what)


def fetch_dicts(
    conn: Connection,
    sql: str,
    params: Any,
    names: Sequence[str],
    converters: Sequence[tuple[int, Callable[[Any], Any]]],
    what: str = "record",
) -> list[dict[str, Any]]:
    """Run ``sql``; rows as dicts of ``names``, the columns ``converters`` name converted."""
    result = conn.exec_driver_sql(sql, params)
    try:  # plain tuples straight from the driver: no Row objects for thousands of rows
        rows = result.cursor.fetchall() if result.cursor is not None else []
    finally:
        result.close()
    if not rows:
        return []
    # Convert column by column and zip back: no Python loop over every value.
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True))
    for index, convert in converters:
        try:
            columns[index] = [None if v is None else convert(v) for v in columns[index]]
        except (TypeError, ValueError) as exc:  # SQLite holds times as text, any text
            bad = next(r for r in rows if not _converts(convert, r[index]))
            raise bad_time(what, bad[names.index("uuid")], names[index], bad[index]) from exc
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


def _converts(convert: Callable[[Any], Any], value: Any) -> bool:
    """Whether ``convert`` accepts ``value`` (None always passes)."""
    try:
        if value is not None:
            convert(value)
    except (TypeError, ValueError):
        return False
    return True
