"""Read a SQLite store with the standard library's ``sqlite3`` alone: the reading commands' path.

``ledgerflow books``, ``show`` and ``flows`` must answer in 0.3 s from a fresh process,
and importing SQLAlchemy alone took 0.25 s of that.  ``sqlite_reader(uri)`` gives, for a
plain local SQLite URI, a backend whose connections run the same SELECTs the
SQLAlchemy backend runs (``queries``, ``backend``), spelled as SQLite text, and decode
the rows the same way (times as ``fastpath`` does, records through ``records``).  Tests
run the backend contract and the read model against both paths and compare.

It only reads: the file is opened ``mode=ro`` (a missing file is never created and
nothing is ever written, not even WAL set-up); every write primitive raises
``StorageError``.  The schema check is one query of ``sqlite_master`` and the version
table, no Alembic.  One connection per ``connect()``, used by one thread at a time.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import urllib.parse
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Final, NoReturn

from ledgerflow.errors import CorruptRecordError, SchemaVersionError, StorageError
from ledgerflow.persistence.base import Backend
from ledgerflow.persistence.listing import Cursor
from ledgerflow.persistence.primitives import RecordConnection
from ledgerflow.persistence.records import COLUMNS, Kind, Row
from ledgerflow.persistence.sql import common
from ledgerflow.persistence.sql.common import TABLE_NAMES, SchemaStatus, sqlite_time

__all__ = ["SQLiteReadConnection", "SQLiteReader", "sqlite_reader"]

#: The URI options the reader understands (both the SQLAlchemy backend's own); any
#: other option sends the URI down the SQLAlchemy path, which knows what it means.
_OPTIONS: Final = frozenset({"synchronous", "busy_timeout"})
_NAMES: Final = common.RECORD_NAMES
_PARENT: Final[dict[Kind, str]] = {"flow": "book_uuid", "task": "flow_uuid"}
#: Columns SQLAlchemy's UTCDateTime holds: SQLite text, aware UTC datetimes in rows.
_TIMES: Final = frozenset(
    {"created_at", "updated_at", "started_at", "finished_at", "lease_expires_at"}
)
_SELECT: Final[dict[Kind, str]] = {
    kind: ", ".join((*COLUMNS[kind], "format")) for kind in TABLE_NAMES
}
_BOOKS, _FLOWS, _TASKS = TABLE_NAMES["book"], TABLE_NAMES["flow"], TABLE_NAMES["task"]
_FLOW_STATES: Final = (
    f"SELECT book_uuid, state, count(*) FROM {_FLOWS} WHERE book_uuid IN ({{marks}}) "
    "GROUP BY book_uuid, state"
)
_TASK_STATES: Final = (
    f"SELECT f.book_uuid, t.state, count(*) FROM {_TASKS} AS t JOIN {_FLOWS} AS f "
    "ON t.flow_uuid = f.uuid WHERE f.book_uuid IN ({marks}) GROUP BY f.book_uuid, t.state"
)
_TIME_SPANS: Final = (
    f"SELECT flow_uuid, min(started_at), max(finished_at) FROM {_TASKS} "
    "WHERE flow_uuid IN ({marks}) GROUP BY flow_uuid"
)


def sqlite_reader(uri: str) -> SQLiteReader | None:
    """A read-only stdlib backend for a plain local SQLite URI, else None (use open_backend).

    None also for anything the SQLAlchemy backend should judge: a host, an in-memory
    database, a ``file:`` URI, %-escapes, unknown or malformed options.
    """
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme.lower() not in ("sqlite", "sqlite+pysqlite") or not rest.startswith("/"):
        return None
    database, _, query = rest[1:].partition("?")
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    if any(char in database for char in "%#"):
        return None
    options = urllib.parse.parse_qsl(query, keep_blank_values=True)
    if query and not options:
        return None
    given = dict(options)
    if len(given) != len(options) or not set(given) <= _OPTIONS:
        return None
    if given.get("synchronous", "full").lower() not in ("full", "normal"):
        return None
    try:
        busy_ms = int(given.get("busy_timeout", "30000"))
    except ValueError:
        return None
    return SQLiteReader(uri, Path(os.path.abspath(database)), busy_ms)


class SQLiteReader(Backend):
    """A SQLite file, read through ``sqlite3`` alone; ``connect()`` opens a read connection."""

    schemes = ()  # not in the registry: reading commands ask for it by name

    def __init__(self, uri: str, path: Path, busy_timeout_ms: int) -> None:
        super().__init__(uri)
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms

    @property
    def where(self) -> str:
        """The file, for messages (as the SQLAlchemy backend names it)."""
        return f"file {self.path}"

    def connect(self) -> SQLiteReadConnection:
        """Open a read connection (the file is opened at the first read)."""
        return SQLiteReadConnection(self)


class SQLiteReadConnection(RecordConnection):
    """The read primitives as SQLite text over one ``sqlite3`` connection; writes refused."""

    def __init__(self, backend: SQLiteReader) -> None:
        self._backend = backend
        self._db: sqlite3.Connection | None = None
        #: The schema found when the file was opened (a reading command is short-lived).
        self._status_seen: SchemaStatus | None = None
        self._depth = 0

    @property
    def where(self) -> str:
        """The file, for messages."""
        return self._backend.where

    @property
    def busy_timeout_ms(self) -> int:
        """How long a read waits for a lock (a WAL reader rarely does)."""
        return self._backend.busy_timeout_ms

    def close(self) -> None:
        """Close the file."""
        db, self._db, self._status_seen = self._db, None, None
        if db is not None:
            db.close()

    # ---- the file, its schema and errors ---------------------------------------------
    @contextlib.contextmanager
    def _translating(self, action: str) -> Iterator[None]:
        """sqlite3's errors in the words the SQLAlchemy backend uses for them."""
        try:
            yield
        except sqlite3.Error as error:
            if common.is_corrupt(error):
                raise common.corrupt_store(self.where, error) from error
            words = common.sqlite_words(self, error)
            if words is None:
                words = f"{action} failed on {self.where}: {common.first_line(error)}"
            else:
                words = f"{action}: {words}"
            raise StorageError(words) from error

    def _open(self) -> tuple[sqlite3.Connection, SchemaStatus] | None:
        """The open file and its schema status; None when the file does not exist."""
        if self._db is not None and self._status_seen is not None:
            return self._db, self._status_seen
        if not self._backend.path.exists():  # opening would fail (mode=ro creates nothing)
            return None
        with self._translating("read"):
            target = f"{self._backend.path.as_uri()}?mode=ro"
            db = sqlite3.connect(
                target, uri=True, isolation_level=None, timeout=self.busy_timeout_ms / 1000
            )
            try:
                status = self._status(db)
            except BaseException:
                db.close()
                raise
        self._db, self._status_seen = db, status
        return db, status

    def _reading(self) -> sqlite3.Connection | None:
        """The open file, or None when there is nothing to read (no file, no schema)."""
        opened = self._open()
        if opened is None:
            return None
        db, status = opened
        outdated = status.outdated()
        if outdated is not None:  # an older schema lacks columns every SELECT names
            raise self._needs_upgrade(outdated)
        return db if status.has_tables else None

    @staticmethod
    def _status(db: sqlite3.Connection) -> SchemaStatus:
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        current = None
        if common.VERSION_TABLE in names:
            found = db.execute(f"SELECT version_num FROM {common.VERSION_TABLE}").fetchone()
            current = None if found is None else found[0]
        return SchemaStatus.of(current, names)

    def _needs_upgrade(self, why: str) -> SchemaVersionError:
        return SchemaVersionError(
            f"the store at {self.where} {why}; call upgrade() or run `ledgerflow upgrade`"
        )

    def _rows(self, kind: Kind, sql: str, params: Sequence[Any]) -> list[Row]:
        """Rows of ``kind`` as dicts (times decoded, ``format`` checked and dropped)."""
        db = self._reading()
        if db is None:
            return []
        with self._translating("read"):
            found = db.execute(sql, params).fetchall()
        names = COLUMNS[kind]
        rows = []
        for values in found:
            *fields, stored_format = values
            row = dict(zip(names, fields, strict=True))
            if stored_format != "json":
                raise CorruptRecordError(
                    f"{_NAMES[kind]} {row['uuid']} is stored in a format this version "
                    "of ledgerflow cannot read"
                )
            for name in _TIMES.intersection(row):
                if row[name] is not None:
                    row[name] = _time(kind, row, name)
            rows.append(row)
        return rows

    def _grouped(self, sql: str, keys: Sequence[str]) -> list[tuple[Any, ...]]:
        db = self._reading()
        if db is None:
            return []
        found: list[tuple[Any, ...]] = []
        with self._translating("read"):
            for start in range(0, len(keys), self.fetch_chunk):
                chunk = list(keys[start : start + self.fetch_chunk])
                found.extend(db.execute(sql.format(marks=_marks(chunk)), chunk).fetchall())
        return found

    # ---- schema ------------------------------------------------------------------------
    def upgrade(self) -> NoReturn:
        """Refused: this connection only reads (open the store with ``lf.open_backend``)."""
        self._read_only("upgrade")

    def validate(self) -> None:
        """Raise SchemaVersionError unless the schema is the one this version uses."""
        opened = self._open()
        if opened is None:
            raise self._needs_upgrade("has no ledgerflow schema (the file does not exist)")
        status = opened[1]
        status.check_known(self.where)
        if status.current is None:
            raise self._needs_upgrade("has no ledgerflow schema")
        outdated = status.outdated()
        if outdated is not None or not status.has_tables:
            raise self._needs_upgrade(outdated or "has no ledgerflow schema")

    # ---- reads -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[None]:
        """One read transaction: every read inside sees one WAL snapshot (may nest)."""
        db = self._reading() if self._depth == 0 else None
        if db is None:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        with self._translating("read"):
            db.execute("BEGIN")
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            db.execute("ROLLBACK")

    def _fetch(
        self, kind: Kind, *, uuids: Sequence[str] = (), parents: Sequence[str] = ()
    ) -> list[Row]:
        keys = list(parents or uuids)
        key = _PARENT[kind] if parents else "uuid"
        sql = (
            f"SELECT {_SELECT[kind]} FROM {TABLE_NAMES[kind]} "
            f"WHERE {key} IN ({_marks(keys)}) ORDER BY id"
        )
        return self._rows(kind, sql, keys) if keys else []

    def _child_keys(self, kind: Kind, parents: Sequence[str]) -> list[tuple[str, str]]:
        key, table = _PARENT[kind], TABLE_NAMES[kind]
        sql = f"SELECT {key}, uuid FROM {table} WHERE {key} IN ({{marks}}) ORDER BY id"
        return [(parent, uuid) for parent, uuid in self._grouped(sql, parents)]

    def _list_books(
        self,
        *,
        limit: int | None,
        offset: int,
        name: str | None,
        state: str | None,
        newest_first: bool,
        count_only: bool = False,
        after: Cursor | None = None,
        prefix: str | None = None,
    ) -> list[Row] | int:
        if count_only and state is not None and name is None and prefix is None:
            # As queries.books: the (state, book_uuid) index alone, no probe per book.
            sql = f"SELECT count(DISTINCT book_uuid) FROM {_FLOWS} WHERE state = ?"
            return self._count(sql, [state])
        where: list[str] = []
        params: list[Any] = []
        if name is not None:
            where.append("name = ?")
            params.append(name)
        if state is not None:
            where.append(
                f"EXISTS (SELECT 1 FROM {_FLOWS} WHERE {_FLOWS}.book_uuid = {_BOOKS}.uuid "
                f"AND {_FLOWS}.state = ?)"
            )
            params.append(state)
        _prefix(where, params, prefix)
        if count_only:
            return self._count(f"SELECT count(*) FROM {_BOOKS}{_where(where)}", params)
        sql = _paged(f"SELECT {_SELECT['book']} FROM {_BOOKS}", where, params, newest_first, after)
        return self._rows("book", _limit(sql, params, limit, offset), params)

    def _list_flows(
        self,
        *,
        limit: int | None,
        offset: int,
        name: str | None,
        state: str | None,
        since: datetime | None,
        after: Cursor | None,
        prefix: str | None,
        count_only: bool = False,
    ) -> list[Row] | int:
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("name", name), ("state", state)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            where.append("created_at >= ?")
            params.append(common.sqlite_time_text(since))
        _prefix(where, params, prefix)
        if count_only:
            return self._count(f"SELECT count(*) FROM {_FLOWS}{_where(where)}", params)
        sql = _paged(f"SELECT {_SELECT['flow']} FROM {_FLOWS}", where, params, True, after)
        return self._rows("flow", _limit(sql, params, limit, offset), params)

    def _count(self, sql: str, params: Sequence[Any]) -> int:
        db = self._reading()
        if db is None:
            return 0
        with self._translating("read"):
            return int(db.execute(sql, params).fetchone()[0])

    def _flow_state_counts(self, book_uuids: Sequence[str]) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {uuid: {} for uuid in book_uuids}
        for book_uuid, state, count in self._grouped(_FLOW_STATES, book_uuids):
            counts[book_uuid][state] = int(count)
        return counts

    def _task_state_counts(self, book_uuids: Sequence[str]) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {uuid: {} for uuid in book_uuids}
        for book_uuid, state, count in self._grouped(_TASK_STATES, book_uuids):
            counts[book_uuid][state] = int(count)
        return counts

    def _task_time_spans(
        self, flow_uuids: Sequence[str]
    ) -> dict[str, tuple[datetime | None, datetime | None]]:
        spans: dict[str, tuple[datetime | None, datetime | None]] = {}
        for flow_uuid, first, last in self._grouped(_TIME_SPANS, flow_uuids):
            row = {"uuid": flow_uuid, "started_at": first, "finished_at": last}
            spans[flow_uuid] = tuple(  # type: ignore[assignment]
                None if row[name] is None else _time("flow", row, name)
                for name in ("started_at", "finished_at")
            )
        return spans

    # ---- writes: none ------------------------------------------------------------------
    def _read_only(self, action: str) -> NoReturn:
        raise StorageError(
            f"{action}: the SQLite {self.where} is open read-only here "
            "(open it with lf.open_backend to write)"
        )

    def _transaction(self) -> contextlib.AbstractContextManager[None]:
        self._read_only("write")

    def _insert(self, kind: Kind, rows: Sequence[Row]) -> None:
        self._read_only("write")

    def _update(self, kind: Kind, row: Row, expected_revision: int | None) -> int:
        self._read_only("write")

    def _delete_book(self, uuid: str) -> bool:
        self._read_only("write")

    def _clear(self) -> None:
        self._read_only("write")


def _time(kind: Kind, row: Row, name: str) -> datetime:
    """A stored time as an aware UTC datetime; a record holding something else is corrupt."""
    value = row[name]
    try:
        return sqlite_time(value)
    except (TypeError, ValueError) as exc:
        raise common.bad_time(_NAMES[kind], row["uuid"], name, value) from exc


def _marks(keys: Sequence[str]) -> str:
    return ", ".join("?" * len(keys))


def _where(conditions: Sequence[str]) -> str:
    return f" WHERE {' AND '.join(conditions)}" if conditions else ""


def _prefix(where: list[str], params: list[Any], prefix: str | None) -> None:
    """Case-sensitive ``startswith`` (SQLite's LIKE ignores case), as ``queries.has_prefix``."""
    if prefix is not None:
        where.append("substr(uuid, 1, ?) = ?")
        params.extend([len(prefix), prefix])


def _paged(
    select: str, where: list[str], params: list[Any], newest_first: bool, after: Cursor | None
) -> str:
    """Ordered by (created_at, uuid), past the cursor: as ``queries.keyset`` (an index range)."""
    if after is not None:
        at, key = common.sqlite_time_text(after[0]), after[1]
        if newest_first:
            where.append("created_at <= ? AND (created_at < ? OR uuid < ?)")
        else:
            where.append("created_at >= ? AND (created_at > ? OR uuid > ?)")
        params.extend([at, at, key])
    order = " DESC" if newest_first else ""
    return f"{select}{_where(where)} ORDER BY created_at{order}, uuid{order}"


def _limit(sql: str, params: list[Any], limit: int | None, offset: int) -> str:
    if limit is None and not offset:
        return sql
    params.extend([-1 if limit is None else limit, offset])
    return f"{sql} LIMIT ? OFFSET ?"
