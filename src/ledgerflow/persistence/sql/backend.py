"""``SQLBackend``: SQLite, PostgreSQL and MariaDB/MySQL through SQLAlchemy Core.

The statements live in ``statements`` (built once, at import; the two hottest also
compiled once per process and kind of dialect, see ``fastpath``).  Connections,
transactions and snapshots are ``transactions.SQLTransactions``, which this module's
``SQLConnection`` builds on: every write runs inside its ``_transaction`` (the one write
path: fencing, retries and tracing hook in there), and reads of a book or flow with its
details run in one read transaction, so a concurrent write is seen whole or not at all.

Only ``upgrade()`` creates schema.  Reading a store without one finds nothing and
writes nothing (a missing SQLite file is not even created); writing to it raises
``SchemaVersionError`` telling to upgrade.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, Final, TypeVar

import sqlalchemy as sa
from sqlalchemy import Connection as SAConnection
from sqlalchemy import func

from ledgerflow.errors import (
    ConflictError,
    CorruptRecordError,
    CorruptStoreError,
    NotFound,
    StorageError,
)
from ledgerflow.persistence import care, records
from ledgerflow.persistence.base import Backend, Fence, fenced_out
from ledgerflow.persistence.care import Damage, PurgePolicy
from ledgerflow.persistence.listing import Cursor
from ledgerflow.persistence.ownership import OwnChange, Ownership
from ledgerflow.persistence.records import Kind, Row
from ledgerflow.persistence.sql import care as sql_care
from ledgerflow.persistence.sql import common, leases, migrate, queries
from ledgerflow.persistence.sql.engines import (
    SQLITE_WAL,
    StoreAddress,
    create_engine,
    parse_uri,
)
from ledgerflow.persistence.sql.fastpath import PreparedUpdate
from ledgerflow.persistence.sql.onestatement import OneStatementCommits
from ledgerflow.persistence.sql.packets import PacketLimit
from ledgerflow.persistence.sql.statements import DELETE_BOOK as _DELETE_BOOK
from ledgerflow.persistence.sql.statements import DELETE_TASKS as _DELETE_TASKS
from ledgerflow.persistence.sql.statements import FENCE as _FENCE
from ledgerflow.persistence.sql.statements import INSERT as _INSERT
from ledgerflow.persistence.sql.statements import NAMES as _NAMES
from ledgerflow.persistence.sql.statements import REVISION as _REVISION
from ledgerflow.persistence.sql.statements import SELECTS as _SELECTS
from ledgerflow.persistence.sql.statements import SETTABLE as _SETTABLE
from ledgerflow.persistence.sql.statements import Releases, Selects, Updates, prepared
from ledgerflow.persistence.sql.tables import BOOKS, FLOWS, FORMAT_DEFAULT, TABLES, TASKS
from ledgerflow.persistence.sql.transactions import _begin_immediate

__all__ = ["SQLBackend", "SQLConnection"]

_T = TypeVar("_T")

#: Tries of an ownership change that the server picked as a deadlock victim.
_DEADLOCK_TRIES: Final = 8
#: Any fixed number identifies our upgrade lock among PostgreSQL advisory locks.
_PG_UPGRADE_LOCK: Final = 0x1ED6E5F10


def _with_query(uri: str, options: dict[str, Any]) -> str:
    """``uri`` with ``options`` added to its query string (a dict's entries win)."""
    base, _, query = uri.partition("?")
    merged = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    for key, value in options.items():
        merged[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return f"{base}?{urllib.parse.urlencode(merged)}"


def _deadlock_retried(action: Callable[[], _T]) -> _T:
    """``action()``, again after a deadlock (the server's choice of victim, not a failure)."""
    for attempt in range(_DEADLOCK_TRIES):
        try:
            return action()
        except StorageError as exc:
            if attempt == _DEADLOCK_TRIES - 1 or "deadlock" not in str(exc).lower():
                raise
            time.sleep(0.01 * 2**attempt)
    raise AssertionError("unreachable")  # pragma: no cover


class SQLBackend(Backend):
    """A SQL database reached through SQLAlchemy; see ``engines`` for every setting."""

    schemes = ("sqlite", "postgresql", "postgres", "mysql", "mariadb")

    def __init__(self, uri: str, **options: Any) -> None:
        super().__init__(uri, **options)
        # open_backend({"connection": uri, **options}): the options mean what the same
        # URI query options mean (and an unknown one is refused the same way).
        self.address: StoreAddress = parse_uri(_with_query(uri, options) if options else uri)
        self.engine = create_engine(self.address)
        #: Set once the tables are known to exist, so later calls skip the check.
        self.schema_seen = False
        #: Set when SQLite reported the file malformed: every later write is refused.
        self.corrupt: CorruptStoreError | None = None
        #: MySQL/MariaDB: the server's max_allowed_packet, checked before each row is sent.
        self.packets: PacketLimit | None = None
        if self.address.backend_name in ("mysql", "mariadb"):
            self.packets = PacketLimit(self.engine, self.address.where)
        self.updates: Updates
        self.selects: Selects
        self.releases: Releases
        self.updates, self.selects, self.releases = prepared(self.engine.dialect)

    def connect(self) -> SQLConnection:
        """Open a connection (a checkout from the pool happens per operation)."""
        return SQLConnection(self)

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


class SQLConnection(OneStatementCommits):
    """The row primitives in SQL; each public call is one transaction or one read."""

    # ---- schema ---------------------------------------------------------------------
    def upgrade(self) -> None:
        """Create or migrate the schema to the current version; idempotent."""
        where = self._address.where
        self._refuse_if_corrupt()
        if self._up_to_date():  # no write lock, no write: a reader may call this freely
            return
        if self._address.path is not None:  # the one call that may create the file
            os.makedirs(os.path.dirname(self._address.path), exist_ok=True)
        with self._connect("upgrade") as conn, self._upgrade_lock(conn):
            if self._sqlite and not self._address.memory:
                conn.exec_driver_sql(SQLITE_WAL)  # a new file's first write (see engines)
                conn.commit()
            with conn.begin():
                if self._sqlite:
                    _begin_immediate(conn)
                elif self._address.backend_name == "postgresql":
                    conn.execute(sa.select(func.pg_advisory_xact_lock(_PG_UPGRADE_LOCK)))
                migrate.upgrade(conn, where)
        self._backend.schema_seen = True

    def _up_to_date(self) -> bool:
        """Whether the schema is already this version's (read only; False if unsure)."""
        if self._file_missing():
            return False
        with self._connect("upgrade") as conn:
            status = migrate.schema_status(conn)
        status.check_known(self._address.where)
        return status.current is not None and status.up_to_date and status.has_tables

    @contextlib.contextmanager
    def _upgrade_lock(self, conn: SAConnection) -> Iterator[None]:
        """MySQL commits DDL at once: a named lock keeps two upgrades from interleaving."""
        if self._address.backend_name not in ("mysql", "mariadb"):
            yield
            return
        conn.execute(sa.select(func.get_lock("ledgerflow_upgrade", 600)))
        conn.commit()
        try:
            yield
        finally:
            conn.execute(sa.select(func.release_lock("ledgerflow_upgrade")))
            conn.commit()

    def validate(self) -> None:
        """Raise SchemaVersionError unless the schema is the one this version uses."""
        if self._file_missing():
            raise self._needs_upgrade("has no ledgerflow schema (the file does not exist)")
        with self._connect("validate") as conn:
            status = migrate.schema_status(conn)
        status.check_known(self._address.where)
        if status.current is None:
            raise self._needs_upgrade("has no ledgerflow schema")
        if not status.up_to_date or not status.has_tables:
            raise self._needs_upgrade(
                f"is at schema revision {status.current!r}, not {migrate.head()!r}: "
                "it needs upgrade"
            )

    # ---- reads ----------------------------------------------------------------------
    def _fetch(
        self, kind: Kind, *, uuids: Sequence[str] = (), parents: Sequence[str] = ()
    ) -> list[Row]:
        keys = list(parents or uuids)
        prepared = self._backend.selects[kind, bool(parents)]
        with self._reading() as conn:
            if conn is None:
                return []
            try:
                if prepared is not None:
                    rows = prepared.fetch(conn, keys)
                else:
                    result = conn.execute(_SELECTS[kind, bool(parents)], {"keys": keys})
                    rows = [dict(row._mapping) for row in result]
            except Exception as exc:  # looked into only when it happens: no cost on the way
                if not isinstance(exc, (sa.exc.DataError, *common.load_errors(conn.dialect))):
                    raise
                named = [] if parents else keys
                raise common.unloadable(_NAMES[kind], named, exc) from exc
        for row in rows:
            if row.pop("format") != FORMAT_DEFAULT:
                raise CorruptRecordError(
                    f"{_NAMES[kind]} {row['uuid']} is stored in a format this version "
                    "of ledgerflow cannot read"
                )
        return rows

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
        with self._reading() as conn:
            if conn is None:
                return 0 if count_only else []
            statement = queries.books(conn, name, state, prefix, count_only)
            if count_only:
                return int(conn.execute(statement).scalar_one())
            statement = queries.keyset(conn, BOOKS, statement, newest_first, after)
            return self._fetch_rows(conn, statement.limit(limit).offset(offset or None), "book")

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
        with self._reading() as conn:
            if conn is None:
                return 0 if count_only else []
            statement = queries.flows(conn, name, state, since, prefix, count_only)
            if count_only:
                return int(conn.execute(statement).scalar_one())
            statement = queries.keyset(conn, FLOWS, statement, True, after)
            return self._fetch_rows(conn, statement.limit(limit).offset(offset or None), "flow")

    def _grouped(self, statement: sa.Select[Any], keys: Sequence[str]) -> list[Any]:
        """Rows of a GROUP BY over ``keys`` (bound as ``:keys``), a chunk of keys at a time."""
        with self._reading() as conn:
            if conn is None:
                return []
            return [
                row
                for start in range(0, len(keys), self.fetch_chunk)
                for row in conn.execute(
                    statement, {"keys": list(keys[start : start + self.fetch_chunk])}
                )
            ]

    def _child_keys(self, kind: Kind, parents: Sequence[str]) -> list[tuple[str, str]]:
        return [(parent, uuid) for parent, uuid in self._grouped(queries.CHILD_KEYS[kind], parents)]

    def _task_state_counts(self, book_uuids: Sequence[str]) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {uuid: {} for uuid in book_uuids}
        for book_uuid, state, count in self._grouped(queries.TASK_STATES, book_uuids):
            counts[book_uuid][state] = int(count)
        return counts

    def _flow_state_counts(self, book_uuids: Sequence[str]) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {uuid: {} for uuid in book_uuids}
        for book_uuid, state, count in self._grouped(queries.FLOW_STATES, book_uuids):
            counts[book_uuid][state] = int(count)
        return counts

    def _task_time_spans(
        self, flow_uuids: Sequence[str]
    ) -> dict[str, tuple[datetime | None, datetime | None]]:
        rows = self._grouped(queries.TIME_SPANS, flow_uuids)
        return {flow_uuid: (first, last) for flow_uuid, first, last in rows}

    def _fetch_rows(self, conn: SAConnection, statement: sa.Select[Any], kind: Kind) -> list[Row]:
        try:
            result = conn.execute(statement)
            names = list(result.keys())
            rows = [dict(zip(names, values, strict=True)) for values in result]
        except (ValueError, sa.exc.DataError) as exc:  # one row holds what is not a time
            uuids = conn.execute(statement.with_only_columns(TABLES[kind].c.uuid)).scalars()
            for uuid in list(uuids):
                self._fetch(kind, uuids=[uuid])  # names the record (a CorruptRecordError)
            raise CorruptRecordError(f"a {_NAMES[kind]} row is corrupt: {exc}") from exc
        for row in rows:
            if row.pop("format") != FORMAT_DEFAULT:
                raise CorruptRecordError(
                    f"{_NAMES[kind]} {row['uuid']} is stored in an unknown format"
                )
        return rows

    # ---- writes ---------------------------------------------------------------------
    def _insert(self, kind: Kind, rows: Sequence[Row]) -> None:
        with self._transaction():
            self._check_packets(kind, rows)
            self._writer().execute(_INSERT[kind], list(rows))

    def _check_packets(self, kind: Kind, rows: Sequence[Row]) -> None:
        """MySQL: refuse a row its server would refuse, before it is sent (see ``packets``)."""
        packets = self._backend.packets
        if packets is not None:
            for row in rows:
                packets.check(_NAMES[kind], row["uuid"], row)

    def _update(self, kind: Kind, row: Row, expected_revision: int | None) -> int:
        conn = self._current
        if conn is None:
            with self._transaction():
                return self._update(kind, row, expected_revision)
        fence: Fence | None = getattr(self._local, "fence", None)
        fenced = fence is not None and kind != "book"
        prepared = self._backend.updates[kind, expected_revision is not None, fenced]
        return self._run_update(conn, kind, row, expected_revision, prepared)

    def _update_releasing(self, row: Row, expected_revision: int | None, release: OwnChange) -> int:
        """The flow's fenced UPDATE with the release in its SET: one statement for both."""
        conn = self._writer()
        assert getattr(self._local, "fence", None) is not None, "a release is fenced"
        prepared = self._backend.releases[expected_revision is not None, release.clear_cancel]
        return self._run_update(conn, "flow", row, expected_revision, prepared)

    def _release(self, flow_uuid: str, release: OwnChange) -> None:
        """The release as one UPDATE of the current transaction (its fence in the WHERE)."""
        if not leases.change(self._writer(), flow_uuid, release):
            self._check_flow(self._writer(), flow_uuid)
            raise fenced_out(flow_uuid, release.fence, self.get_ownership(flow_uuid).fence)

    def _run_update(
        self,
        conn: SAConnection,
        kind: Kind,
        row: Row,
        expected_revision: int | None,
        prepared: PreparedUpdate,
    ) -> int:
        """Run one compiled UPDATE of ``row`` in the current transaction (the hot path)."""
        if self._backend.packets is not None:
            self._check_packets(kind, [row])
        local = self._local
        fence: Fence | None = getattr(local, "fence", None)
        fenced = fence is not None and kind != "book"
        driver: sqlite3.Connection | None = getattr(local, "driver", None)
        uuid = row["uuid"]
        if driver is not None:  # SQLite: the row itself carries the bind values
            row["w_uuid"], row["w_revision"] = uuid, expected_revision
            if fence is not None:
                row["w_flow"], row["w_fence"] = fence
            count = prepared.run_sqlite(driver, row)
        else:
            params = {name: row[name] for name in _SETTABLE[kind]}
            params["w_uuid"] = uuid
            if expected_revision is not None:
                params["w_revision"] = expected_revision
            if fenced and fence is not None:
                params["w_fence"] = fence[1]
                if kind != "flow":
                    params["w_flow"] = fence[0]
            count = prepared.run(conn, params)
        if count == 1:
            if expected_revision is not None:
                return expected_revision + 1
            return int(conn.execute(_REVISION[kind], {"w_uuid": uuid}).scalar_one())
        if fenced and fence is not None:
            stored_fence = conn.execute(_FENCE, {"w_uuid": fence[0]}).scalar_one_or_none()
            if stored_fence != fence[1]:
                raise fenced_out(fence[0], fence[1], stored_fence)
        stored = conn.execute(_REVISION[kind], {"w_uuid": uuid}).scalar_one_or_none()
        if stored is None:
            raise NotFound(f"no {_NAMES[kind]} with uuid {uuid!r}")
        raise ConflictError(
            f"{_NAMES[kind]} {uuid} is at revision {stored}, "
            f"the write was based on revision {expected_revision}"
        )

    def _fence(self, fence: Fence) -> None:
        """Every UPDATE of the current transaction checks ``fence`` in its own WHERE."""
        self._local.fence = fence

    def get_ownership(self, flow_uuid: str) -> Ownership:
        """Return the flow's owner, fence, lease and pending request (the server's clock)."""
        records.check_uuid(flow_uuid, "flow detail uuid")
        with self._reading() as conn:
            found = None if conn is None else leases.read(conn, flow_uuid)
        if found is None:
            raise NotFound(f"no flow detail with uuid {flow_uuid!r}")
        return found

    def change_ownership(self, flow_uuid: str, change: OwnChange) -> bool:
        """Apply one compare-and-set of ``ownership`` in one UPDATE (the server's clock).

        A deadlock (a taker's UPDATE against an engine's fenced write, which holds the
        flow row shared) is the server's choice of victim, not a failure: tried again.
        """
        records.check_uuid(flow_uuid, "flow detail uuid")
        return _deadlock_retried(lambda: self._change_ownership(flow_uuid, change))

    def take_ownership(self, flow_uuid: str, change: OwnChange) -> Ownership | None:
        """Apply the take ``change``; on PostgreSQL one UPDATE ... RETURNING, no read after."""
        if self._address.backend_name != "postgresql":
            return super().take_ownership(flow_uuid, change)
        records.check_uuid(flow_uuid, "flow detail uuid")
        return _deadlock_retried(lambda: self._take_ownership(flow_uuid, change))

    def _change_ownership(self, flow_uuid: str, change: OwnChange) -> bool:
        with self._transaction():
            conn = self._writer()
            if leases.change(conn, flow_uuid, change):
                return True
            self._check_flow(conn, flow_uuid)
            return False

    def _take_ownership(self, flow_uuid: str, change: OwnChange) -> Ownership | None:
        if self._one_statement_fits():  # one statement: autocommitted, no BEGIN nor COMMIT
            with self._autocommitted() as conn:
                return self._take_on(conn, flow_uuid, change)
        with self._transaction():
            return self._take_on(self._writer(), flow_uuid, change)

    def _take_on(self, conn: SAConnection, flow_uuid: str, change: OwnChange) -> Ownership | None:
        taken = leases.take(conn, flow_uuid, change)
        if taken is None:
            self._check_flow(conn, flow_uuid)
        return taken

    @staticmethod
    def _check_flow(conn: SAConnection, flow_uuid: str) -> None:
        """NotFound unless the flow row exists (a compare-and-set that failed tells why)."""
        if conn.execute(_FENCE, {"w_uuid": flow_uuid}).scalar_one_or_none() is None:
            raise NotFound(f"no flow detail with uuid {flow_uuid!r}")

    def _scan(self, kind: Kind) -> Iterator[care.ScanItem]:
        """Every row of ``kind`` by table and id, decoded one at a time (see ``sql.care``)."""
        return sql_care.scan(self, kind)

    def _check_store(self) -> Iterator[Damage]:
        """SQLite's ``PRAGMA integrity_check`` of the file (servers check themselves)."""
        return sql_care.integrity_problems(self)

    def purge_logbooks(self, policy: PurgePolicy, progress: care.Progress | None = None) -> int:
        """Remove the books ``policy`` allows with one DELETE per batch; return how many."""
        return sql_care.purge(self, policy, progress)

    def _delete_book(self, uuid: str) -> bool:
        with self._transaction():
            # ON DELETE CASCADE removes the flows and tasks in the same statement.
            return bool(self._writer().execute(_DELETE_BOOK, {"w_uuid": uuid}).rowcount)

    def _delete_tasks(self, flow_uuid: str, uuids: Sequence[str]) -> None:
        with self._transaction():
            for start in range(0, len(uuids), self.fetch_chunk):
                keys = list(uuids[start : start + self.fetch_chunk])
                self._writer().execute(_DELETE_TASKS, {"keys": keys, "w_flow": flow_uuid})

    def _clear(self) -> None:
        conn = self._writer()
        for table in (TASKS, FLOWS, BOOKS):
            conn.execute(table.delete())

    def clear_all(self) -> None:
        """Delete every record; a store without schema has none (and gets none)."""
        with self._reading() as probe:
            if probe is None:
                return
        super().clear_all()
