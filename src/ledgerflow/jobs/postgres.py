"""PostgreSQL boards: the conductor's calls are one autocommitted statement each.

A claim is one ``UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING``
statement; renew, complete, hand back and expire are one fenced ``UPDATE`` (state and
owner in its ``WHERE``); an idle conductor's look for work is one ``SELECT``.  Each
runs alone in autocommit on a connection of its own thread, prepared by psycopg after a
few uses: one round trip and one commit, where a transaction through SQLAlchemy took
three round trips (BEGIN, statement, COMMIT) and rebuilt the statement each time.  Times
are the server's ``now()``.

A post on a board whose logbooks share its database is one autocommitted statement
too: the book, its flow detail and the job inserted by three data-modifying ``WITH``
clauses and the wake-up sent by ``pg_notify`` in its ``SELECT``, so it is atomic as
one statement is, and the NOTIFY reaches listeners only if it commits.  A key held by
an unfinished job fails the whole statement (nothing is written) and the holder is
returned.  Seven round trips through SQLAlchemy (ping, BEGIN, three INSERTs, NOTIFY,
COMMIT) became one.

A connection that fails is dropped and the error raised as StorageError; the next
call connects again, so a server restart costs the calls made while it is down; one
the server ended while it sat idle is seen before use (a poll, no round trip) and
replaced, as the pool's pre-ping would.  A statement whose reply was lost may have
committed: a claim then lapses after its lease and is claimed again (its flow's fence
keeps the old run out), and the conductor asks again before it takes a completion for
lost.
"""

from __future__ import annotations

import contextlib
import select
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Final

from ledgerflow.errors import ConflictError, StorageError
from ledgerflow.jobs.board import Idle
from ledgerflow.jobs.model import ENDED, Job
from ledgerflow.jobs.sql import _CHANNEL, _FIELDS, SQLBoard, idle_of
from ledgerflow.models import LogBook
from ledgerflow.persistence import records
from ledgerflow.persistence.sql.common import TABLE_NAMES

__all__ = ["PostgresBoard"]

_RETURNING: Final = ", ".join(_FIELDS)
_PICK: Final = """
SELECT id FROM (
  SELECT * FROM (
    SELECT id, priority FROM ledgerflow_jobs
    WHERE state = 'READY' AND available_at <= now()
    ORDER BY priority DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED) AS ready
  UNION ALL
  SELECT * FROM (
    SELECT id, priority FROM ledgerflow_jobs
    WHERE state = 'CLAIMED' AND claim_expires_at <= now() AND attempts < max_attempts
    ORDER BY priority DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED) AS lapsed
) AS pick ORDER BY priority DESC, id LIMIT 1
"""
_CLAIM: Final = f"""
UPDATE ledgerflow_jobs SET state = 'CLAIMED', owner = %(owner)s, attempts = attempts + 1,
  claim_expires_at = now() + %(lease)s * interval '1 second', updated_at = now()
WHERE id = ({_PICK})
RETURNING {_RETURNING}
"""
_FENCE: Final = "WHERE uuid = %(uuid)s AND state = 'CLAIMED' AND owner = %(owner)s"
_RENEW: Final = f"""
UPDATE ledgerflow_jobs SET claim_expires_at = now() + %(lease)s * interval '1 second',
  updated_at = now() {_FENCE}
"""
_COMPLETE: Final = f"""
UPDATE ledgerflow_jobs SET state = %(state)s, last_error = %(error)s, owner = NULL,
  held_key = NULL, updated_at = now() {_FENCE}
"""
_HAND_BACK: Final = f"""
UPDATE ledgerflow_jobs SET state = 'READY', owner = NULL, held_key = key,
  attempts = attempts - %(refund)s,
  available_at = now() + %(delay)s * interval '1 second', updated_at = now() {_FENCE}
"""
_EXPIRE: Final = f"UPDATE ledgerflow_jobs SET claim_expires_at = now(), updated_at = now() {_FENCE}"
#: What an idle conductor needs, in one statement: a row for READY, one per claim.
_IDLE: Final = """
SELECT NULL, NULL, count(*), min(available_at), 0 FROM ledgerflow_jobs WHERE state = 'READY'
UNION ALL
SELECT uuid, owner, (claim_expires_at <= now())::int, NULL, (attempts >= max_attempts)::int
FROM ledgerflow_jobs WHERE state = 'CLAIMED'
"""


#: The job's unique index on ``held_key``: the one a post may run into.
_HELD_KEY: Final = "uq_ledgerflow_jobs_held_key"


def _post_statement(book: tuple[str, ...], flow: tuple[str, ...], job: tuple[str, ...]) -> str:
    """One statement inserting a book, its flow detail and its job, then NOTIFY."""

    def insert(alias: str, table: str, columns: tuple[str, ...]) -> str:
        values = ", ".join(f"%({alias}_{column})s" for column in columns)
        return f"{alias} AS (INSERT INTO {table} ({', '.join(columns)}) VALUES ({values}))"

    clauses = (
        insert("b", TABLE_NAMES["book"], book),
        insert("f", TABLE_NAMES["flow"], flow),
        insert("j", "ledgerflow_jobs", job),
    )
    return f"WITH {', '.join(clauses)} SELECT pg_notify('{_CHANNEL}', '')"


class PostgresBoard(SQLBoard):
    """A SQL board on PostgreSQL with one-statement conductor calls (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._local = threading.local()
        self._opened: list[tuple[threading.Thread, Any]] = []
        self._opened_lock = threading.Lock()
        #: Post statements by their (book, flow, job) columns: built once each.
        self._posts: dict[tuple[tuple[str, ...], ...], str] = {}

    # ---- the user's side --------------------------------------------------------------
    def _post(self, book: LogBook, job: Job) -> Job:
        """One autocommitted statement where the logbooks share the board's database."""
        flows = list(book)
        if not (self._shared and self._tables_seen and self.store.schema_seen):
            return super()._post(book, job)  # the first call checks the schema (and says so)
        if len(flows) != 1 or len(flows[0]):
            return super()._post(book, job)
        rows = {
            "b": {**records.book_to_row(book), "revision": 1},
            "f": {**records.flow_to_row(flows[0], book.uuid), "revision": 1},
            "j": {name: getattr(job, name) for name in _FIELDS},
        }
        rows["j"].update(held_key=job.key, updated_at=job.created_at)
        # Columns left NULL are left out: the statement sends no NULL without a type.
        columns = {
            alias: tuple(k for k, v in row.items() if v is not None) for alias, row in rows.items()
        }
        key = (columns["b"], columns["f"], columns["j"])
        statement = self._posts.get(key)
        if statement is None:
            statement = self._posts[key] = _post_statement(*key)
        params = {f"{alias}_{k}": rows[alias][k] for alias, names in columns.items() for k in names}
        import psycopg

        with self._autocommit("post a job") as cursor:
            try:
                cursor.execute(statement, params)
                held = False
            except psycopg.errors.UniqueViolation as error:  # rolled back whole
                if job.key is None or error.diag.constraint_name != _HELD_KEY:
                    raise ConflictError(f"post a job failed on {self._where()}: {error}") from error
                held = True
        if held:
            assert job.key is not None
            holder = self._find_key(job.key)
            if holder is None:  # the holder ended in between: say so, as a transaction would
                raise ConflictError(f"job key {job.key!r} was held by another job when posted")
            return holder
        for item in (book, flows[0]):
            item.revision = 1
        return job

    # ---- the conductor's side ------------------------------------------------------
    def claim(self, owner: str, lease: float) -> Job | None:
        """Claim the best job available now (priority, then age): READY, or a lapsed claim."""
        if not self._tables_seen:
            self._read_schema()
        with self._autocommit("claim a job") as cursor:
            cursor.execute(_CLAIM, {"owner": owner, "lease": float(lease)})
            row = cursor.fetchone()
        if row is None:
            return None
        values = dict(zip(_FIELDS, row, strict=True))
        for name in ("created_at", "available_at"):
            values[name] = _utc(values[name])
        return Job(**values)

    def renew(self, job_uuid: str, owner: str, lease: float) -> bool:
        """Extend ``owner``'s claim by ``lease`` seconds; False if it is not theirs any more."""
        return self._fenced("renew a claim", _RENEW, job_uuid, owner, lease=float(lease))

    def complete(self, job_uuid: str, owner: str, state: str, last_error: str | None) -> bool:
        """End ``owner``'s claim DONE, FAILED or CANCELLED; False if it is not theirs."""
        if state not in ENDED:
            raise ValueError(f"a job ends DONE, FAILED or CANCELLED, not {state!r}")
        params = {"state": state, "error": last_error}
        return self._fenced("complete a job", _COMPLETE, job_uuid, owner, **params)

    def hand_back(self, job_uuid: str, owner: str, *, delay: float, refund: bool) -> bool:
        """Make ``owner``'s job READY again after ``delay``; ``refund`` gives its claim back."""
        params = {"delay": float(delay), "refund": int(refund)}
        done = self._fenced("hand a job back", _HAND_BACK, job_uuid, owner, **params)
        if done:
            self._wake_conductors()
        return done

    def expire(self, job_uuid: str, owner: str) -> bool:
        """End ``owner``'s lease on the job now (its process is known gone)."""
        return self._fenced("expire a claim", _EXPIRE, job_uuid, owner)

    def idle(self) -> Idle:
        """What is left to claim, now or later: one autocommitted statement."""
        if not self._tables_seen:
            with self._read() as raw:
                if raw is None:  # nothing created yet: nothing to claim
                    return Idle(0, 0, None, (), 0)
        with self._autocommit("look for work") as cursor:
            cursor.execute(_IDLE)
            rows = cursor.fetchall()
        # The READY row is the one without a uuid (UNION ALL promises no order).
        ready, next_at = next((count, at) for uuid, _, count, at, _ in rows if uuid is None)
        claimed = [(uuid, owner, lapsed, at_max) for uuid, owner, lapsed, _, at_max in rows if uuid]
        return idle_of(int(ready), next_at, claimed)

    def _wake_conductors(self) -> None:
        with self._autocommit("wake the conductors") as cursor:
            cursor.execute(f"NOTIFY {_CHANNEL}")

    # ---- connections -----------------------------------------------------------------
    def _fenced(self, action: str, statement: str, uuid: str, owner: str, **params: Any) -> bool:
        if not self._tables_seen:
            self._read_schema()
        with self._autocommit(action) as cursor:
            cursor.execute(statement, {"uuid": uuid, "owner": owner, **params})
            return bool(cursor.rowcount == 1)

    def _read_schema(self) -> None:
        with self._read() as raw:
            if raw is None:
                raise StorageError(f"the store at {self._where()} has no job tables")

    @contextlib.contextmanager
    def _autocommit(self, action: str) -> Iterator[Any]:
        """A cursor on this thread's autocommit connection; driver errors become ours."""
        import psycopg

        try:
            conn = self._connection()
            with conn.cursor() as cursor:
                yield cursor
        except psycopg.Error as error:
            if conn_broken(error):
                self._drop_connection()
            raise StorageError(f"{action} failed on {self._where()}: {error}") from error

    def _connection(self) -> Any:
        """This thread's connection; opening one closes those of threads that ended.

        Posts may come from short-lived threads (one per request): their connections
        go when the next thread opens one, so they never pile up until ``close()``.
        """
        conn = getattr(self._local, "conn", None)
        if conn is not None and not conn.closed and _has_news(conn):
            self._drop_connection()  # the server ended it while idle (a restart): start afresh
            conn = None
        if conn is None or conn.closed:
            import psycopg

            conn = psycopg.connect(self._conninfo(), autocommit=True, connect_timeout=5)
            self._local.conn = conn
            with self._opened_lock:
                ended = [c for thread, c in self._opened if not thread.is_alive()]
                self._opened = [
                    (thread, c) for thread, c in self._opened if thread.is_alive() and not c.closed
                ]
                self._opened.append((threading.current_thread(), conn))
            for old in ended:
                with contextlib.suppress(Exception):
                    old.close()
        return conn

    def _drop_connection(self) -> None:
        conn, self._local.conn = getattr(self._local, "conn", None), None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _conninfo(self) -> str:
        url = self.store.engine.url.set(drivername="postgresql", query={})
        return url.render_as_string(hide_password=False)

    def _where(self) -> str:
        return self.store.address.where

    def _close(self) -> None:
        with self._opened_lock:
            opened, self._opened = self._opened, []
        for _, conn in opened:
            with contextlib.suppress(Exception):
                conn.close()
        super()._close()


def _has_news(conn: Any) -> bool:
    """Whether an idle connection has something to read: what a server sends as it ends one.

    A poll, no round trip (the pool's pre-ping is one); nothing else arrives unasked on a
    connection that does not LISTEN, so at worst a reconnect is spent.
    """
    try:
        return bool(select.select([conn.fileno()], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def conn_broken(error: Exception) -> bool:
    """Whether a psycopg error means the connection is gone (not a refused statement)."""
    import psycopg

    return isinstance(error, psycopg.OperationalError | psycopg.InterfaceError)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)
