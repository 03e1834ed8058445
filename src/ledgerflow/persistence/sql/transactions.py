"""The connections and transactions under ``SQLConnection`` (see ``backend``).

Each thread keeps one pooled connection per connection object (``close()`` returns
them), and no call leaves a transaction open.  Every write runs inside
``_transaction``, the one write path: on SQLite, once the schema was seen, it opens and
commits on the driver connection (``_DirectWrite``), the engine's hot path; elsewhere
through SQLAlchemy.  Reads of several queries share one read transaction
(``_snapshot``: REPEATABLE READ; on SQLite one WAL snapshot).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Connection as SAConnection

from ledgerflow.errors import CorruptStoreError, SchemaVersionError
from ledgerflow.persistence.primitives import RecordConnection
from ledgerflow.persistence.sql import migrate
from ledgerflow.persistence.sql.engines import SERVER_ISOLATION
from ledgerflow.persistence.sql.engines import translate_errors as _translate

if TYPE_CHECKING:
    from ledgerflow.persistence.sql.backend import SQLBackend

__all__ = ["SQLTransactions"]


def _begin_immediate(conn: SAConnection) -> None:
    """Open SQLite's write transaction at once (straight to the driver: it is hot)."""
    conn.connection.driver_connection.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]


_NESTED: Final = contextlib.nullcontext()


@contextlib.contextmanager
def isolated(conn: SAConnection, level: str) -> Iterator[None]:
    """``conn`` at isolation ``level`` (AUTOCOMMIT: each statement commits) for a moment.

    PostgreSQL only: psycopg takes the level with the next BEGIN (or sends none, in
    autocommit), no round trip of its own (MySQL's drivers send a SET each way).  The
    pooled connection goes back to the server default.
    """
    conn.execution_options(isolation_level=level)
    try:
        yield
        if conn.in_transaction():
            conn.commit()  # SQLAlchemy's own bookkeeping; in autocommit nothing is sent
    finally:
        if conn.in_transaction():
            conn.rollback()
        if not conn.invalidated and not conn.closed:
            conn.execution_options(isolation_level=SERVER_ISOLATION)


class _DirectWrite:
    """SQLite's hot path, one commit per engine step, straight on the sqlite3 connection.

    BEGIN IMMEDIATE and COMMIT skip SQLAlchemy's transaction objects (most of the cost
    of a commit that does not fsync), and this is a class rather than a generator
    context for the same reason.  A statement sent through SQLAlchemy inside (an
    INSERT) makes it open its own transaction object, which then commits or rolls back
    this same one.  Driver errors, the commit's included, are translated once.
    """

    __slots__ = ("_owner",)

    def __init__(self, owner: SQLTransactions) -> None:
        self._owner = owner

    def __enter__(self) -> None:
        owner = self._owner
        try:
            conn = owner._checkout()
            driver: sqlite3.Connection = conn.connection.driver_connection  # type: ignore[assignment]
            driver.execute("BEGIN IMMEDIATE")
        except Exception as error:
            raise owner._translated(error, "write")  # noqa: B904 - its cause is the driver error
        local = owner._local
        local.conn, local.driver = conn, driver

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        owner = self._owner
        local = owner._local
        conn: SAConnection = local.conn
        driver: sqlite3.Connection = local.driver
        local.conn = local.driver = local.fence = None
        try:
            if exc is None:
                (conn.commit if conn.in_transaction() else driver.commit)()
            else:
                (conn.rollback if conn.in_transaction() else driver.rollback)()
        except Exception as error:
            raise owner._translated(error, "write")  # noqa: B904 - its cause is the driver error
        if isinstance(exc, Exception):
            translated = owner._translated(exc, "write")
            if translated is not exc:
                raise translated


class SQLTransactions(RecordConnection):
    """A SQL connection's plumbing: pinned connections, transactions, snapshots, errors."""

    def __init__(self, backend: SQLBackend) -> None:
        self._backend = backend
        self._address = backend.address
        self._sqlite = self._address.backend_name == "sqlite"
        self._local = threading.local()
        # Each thread keeps one pooled connection for this Connection's lifetime: a pool
        # checkout and checkin (plus PostgreSQL's pre-ping) per call cost more than the
        # UPDATE itself on the engine's hot path.  close() returns them all.
        self._pinned: list[SAConnection] = []
        self._pinned_lock = threading.Lock()

    def close(self) -> None:
        """Return every connection this Connection holds to the backend's pool."""
        with self._pinned_lock:
            pinned, self._pinned = self._pinned, []
        for conn in pinned:
            with contextlib.suppress(Exception):  # a dead connection is closed all the same
                conn.close()
        self._local = threading.local()

    def _checkout(self) -> SAConnection:
        conn: SAConnection | None = getattr(self._local, "pinned", None)
        if conn is not None and not conn.closed and not conn.invalidated:
            return conn
        conn = self._backend.engine.connect()
        self._local.pinned = conn
        with self._pinned_lock:
            self._pinned = [c for c in self._pinned if not c.closed]
            self._pinned.append(conn)
        return conn

    # ---- connections and transactions ------------------------------------------------
    @property
    def _current(self) -> SAConnection | None:
        conn: SAConnection | None = getattr(self._local, "conn", None)
        return conn

    def _guard(self) -> contextlib.AbstractContextManager[Any]:
        """An in-memory SQLite database is one shared connection: serialize its users."""
        lock = self._address.lock
        return lock if lock is not None else contextlib.nullcontext()

    def _file_missing(self) -> bool:
        path = self._address.path
        if path is None or not self._sqlite or self._backend.schema_seen:
            return False  # a file once seen with its schema is not checked on every call
        return not os.path.exists(path)

    def _no_schema(self, conn: SAConnection) -> bool:
        if self._backend.schema_seen:
            return False
        status = migrate.schema_status(conn)
        if conn.in_transaction():  # the check autobegan one: the caller begins its own
            conn.rollback()
        if not status.has_tables:
            return True
        outdated = status.outdated()
        if outdated is not None:
            # An older schema lacks columns every statement names: say so, not "no such column".
            raise self._needs_upgrade(outdated)
        self._backend.schema_seen = True
        return False

    def _transaction(self) -> contextlib.AbstractContextManager[None]:
        if self._current is not None:  # nested: the outermost transaction commits
            return _NESTED
        if self._open_snapshot is not None:
            raise RuntimeError("a write cannot start inside a snapshot read")
        self._refuse_if_corrupt()
        if self._sqlite and self._backend.schema_seen and self._address.lock is None:
            return _DirectWrite(self)
        return self._server_transaction()

    def _translated(self, error: BaseException, action: str) -> BaseException:
        """What ``_translating`` turns ``error`` into (itself when it is not a driver error)."""
        try:
            with self._translating(action):
                raise error
        except BaseException as translated:
            return translated

    @contextlib.contextmanager
    def _server_transaction(self) -> Iterator[None]:
        if self._file_missing():
            raise self._needs_upgrade("has no ledgerflow schema (the file does not exist)")
        with self._connect("write") as conn:
            if self._no_schema(conn):
                raise self._needs_upgrade("has no ledgerflow schema")
            self._local.conn = conn
            try:
                with conn.begin():
                    if self._sqlite:  # take the write lock now, not at the first write
                        _begin_immediate(conn)
                    yield
            finally:
                self._local.conn = self._local.fence = None

    @contextlib.contextmanager
    def _autocommitted(self) -> Iterator[SAConnection]:
        """A pooled connection in autocommit: each statement its own transaction (psycopg)."""
        with self._connect("write") as conn, isolated(conn, "AUTOCOMMIT"):
            yield conn

    def _refuse_if_corrupt(self) -> None:
        corrupt = self._backend.corrupt
        if corrupt is not None:
            raise CorruptStoreError(str(corrupt)) from corrupt

    @contextlib.contextmanager
    def _translating(self, action: str) -> Iterator[None]:
        """Driver errors become ours; a malformed SQLite file stops all further writes."""
        try:
            with _translate(self._address, action):
                yield
        except CorruptStoreError as error:
            self._backend.corrupt = self._backend.corrupt or error
            raise

    @contextlib.contextmanager
    def _connect(self, action: str) -> Iterator[SAConnection]:
        """A pooled connection; driver errors (connecting included) become ours."""
        with self._guard(), self._translating(action):
            conn = self._checkout()
            try:
                yield conn
            finally:
                if conn.in_transaction():  # end a read's autobegun transaction (and snapshot)
                    conn.rollback()

    @property
    def _open_snapshot(self) -> SAConnection | None:
        conn: SAConnection | None = getattr(self._local, "snapshot", None)
        return conn

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[None]:
        """One read transaction for several queries (REPEATABLE READ; SQLite: one WAL snapshot)."""
        if self._current is not None or self._open_snapshot is not None:
            yield  # inside a write transaction, or nested: already one moment
            return
        with self._reading() as conn:
            if conn is None:  # no schema (or no file): the reads will find nothing
                yield
                return
            level: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
            if self._sqlite:
                conn.exec_driver_sql("BEGIN")
            elif self._address.psycopg:
                # The BEGIN that opens the snapshot says so (psycopg): no SET of its own.
                level = isolated(conn, "REPEATABLE READ")
            else:  # MySQL's driver would send a SET of the session's level, and back
                conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            self._local.snapshot = conn
            try:
                with level:
                    yield
            finally:
                self._local.snapshot = None
        # The read transaction ended on the way out: isolated() commits it, else _reading()
        # rolled it back.

    @contextlib.contextmanager
    def _reading(self) -> Iterator[SAConnection | None]:
        """The current transaction's connection, or a fresh one; None if no schema."""
        current = self._current or self._open_snapshot
        if current is not None:
            yield current
            return
        if self._file_missing():  # connecting would create the file
            yield None
            return
        with self._connect("read") as conn:
            yield None if self._no_schema(conn) else conn

    def _writer(self) -> SAConnection:
        conn = self._current
        assert conn is not None, "write primitives run inside _transaction()"
        return conn

    def _needs_upgrade(self, why: str) -> SchemaVersionError:
        return SchemaVersionError(
            f"the store at {self._address.where} {why}; call upgrade() or run `ledgerflow upgrade`"
        )
