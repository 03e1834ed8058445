"""Boards in SQL: SQLite (one host), PostgreSQL and MariaDB/MySQL.

The job table lives in the board's database beside the logbook tables.  When the
logbooks are in that same database (the default), ``post`` writes the book, its flow
detail and the job in one transaction.  A claim takes the best job and marks it in one
transaction: one ``UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING``
statement on PostgreSQL, a ``SELECT ... FOR UPDATE SKIP LOCKED`` then ``UPDATE`` on
MariaDB/MySQL, and the same under ``BEGIN IMMEDIATE`` (the database's write lock) on
SQLite.  PostgreSQL boards send a ``NOTIFY`` when work becomes available, so idle
conductors wake at once; elsewhere (and as a fallback) they poll.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import UTC, timedelta
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import Connection as SAConnection
from sqlalchemy import func

from ledgerflow.errors import ConflictError
from ledgerflow.jobs import schema
from ledgerflow.jobs.board import Idle, JobBoard, Later, key_held
from ledgerflow.jobs.model import CLAIMED, ENDED, JOB_FIELDS, READY, Job
from ledgerflow.models import LogBook, utcnow
from ledgerflow.persistence.base import Backend
from ledgerflow.persistence.sql.backend import SQLBackend, SQLConnection
from ledgerflow.persistence.sql.engines import translate_errors
from ledgerflow.persistence.sql.tables import UTCDateTime
from ledgerflow.persistence.sql.transactions import _begin_immediate

__all__ = ["SQLBoard"]

JOBS: Final = schema.JOBS
_FIELDS: Final = JOB_FIELDS
_COLUMNS: Final = [JOBS.c[name] for name in _FIELDS]
_CHANNEL: Final = "ledgerflow_jobs"
_PG_UPGRADE_LOCK: Final = 0x1ED6E5F11


def _job(row: Any) -> Job:
    return Job(**{name: row._mapping[name] for name in _FIELDS})


def _picks(now: Any) -> tuple[sa.Select[Any], sa.Select[Any]]:
    """The best READY job and the best lapsed claim, each locked (SKIP LOCKED) if taken.

    Two queries, each served by the claim-order index (state, priority DESC, id);
    one query with ``OR`` between them sorted every READY job on each claim.
    """
    ready = sa.and_(JOBS.c.state == READY, JOBS.c.available_at <= now)
    lapsed = sa.and_(
        JOBS.c.state == CLAIMED,
        JOBS.c.claim_expires_at <= now,
        JOBS.c.attempts < JOBS.c.max_attempts,
    )
    return tuple(  # type: ignore[return-value]
        sa.select(JOBS.c.id, JOBS.c.priority)
        .where(where)
        .order_by(JOBS.c.priority.desc(), JOBS.c.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        for where in (ready, lapsed)
    )


def _clock(dialect: str, seconds: float) -> sa.ColumnElement[Any]:
    """``seconds`` after now on the server's clock (SQLite, one host: this process's)."""
    if dialect == "postgresql":
        now: sa.ColumnElement[Any] = func.now()
        return now if not seconds else now + sa.literal(timedelta(seconds=seconds), sa.Interval())
    if dialect in ("mysql", "mariadb"):
        now = func.utc_timestamp(6)
        micros = round(seconds * 1_000_000)
        return now if not micros else func.timestampadd(sa.text("MICROSECOND"), micros, now)
    return sa.literal(utcnow() + timedelta(seconds=seconds), UTCDateTime())


class SQLBoard(JobBoard):
    """A board whose jobs live in a SQL database (see the module docstring)."""

    schemes = ("sqlite", "postgresql", "postgres", "mysql", "mariadb")

    def __init__(
        self, store: SQLBackend, backend: Backend, *, owns_store: bool, owns_backend: bool
    ) -> None:
        super().__init__(backend, owns_backend=owns_backend and backend is not store)
        self.store = store
        self._owns_store = owns_store
        self._conn: SQLConnection = store.connect()
        self._shared = backend is store
        self._dialect = store.address.backend_name
        self._tables_seen = False
        self._listener: Any = None
        self._listen_lock = threading.Lock()

    # ---- schema ---------------------------------------------------------------------
    def upgrade(self) -> None:
        """Create or migrate the logbook schema and the job tables; idempotent."""
        self._conn.upgrade()
        conn = self._conn
        with (
            conn._connect("upgrade the job tables") as raw,
            conn._upgrade_lock(raw),
            raw.begin(),
        ):
            if self._dialect == "sqlite":  # two upgrades at once: one waits
                _begin_immediate(raw)
            elif self._dialect == "postgresql":
                raw.execute(sa.select(func.pg_advisory_xact_lock(_PG_UPGRADE_LOCK)))
            schema.upgrade(raw, store_where(self.store))
        self._tables_seen = True

    @contextlib.contextmanager
    def _read(self) -> Iterator[SAConnection | None]:
        """A connection for a read, or None where there are no job tables (nothing created)."""
        with self._conn._reading() as raw:
            if raw is not None and not self._tables_seen:
                self._tables_seen = schema.has_jobs(raw, store_where(self.store))
            yield raw if self._tables_seen else None

    @contextlib.contextmanager
    def _write(self) -> Iterator[SAConnection]:
        with self._conn._transaction():
            yield self._conn._writer()

    def _statement(self, action: str) -> contextlib.AbstractContextManager[None]:
        return translate_errors(self.store.address, action)

    # ---- user side --------------------------------------------------------------------
    def _post(self, book: LogBook, job: Job) -> Job:
        row = {name: getattr(job, name) for name in _FIELDS}
        row.update(held_key=job.key, updated_at=job.created_at, claim_expires_at=None)
        try:
            if self._shared:
                with self._write() as raw, self._statement("post a job"):
                    self._conn.insert_logbook(book)  # new uuids: nothing to merge with
                    raw.execute(JOBS.insert(), row)
                    self._notify_in(raw)
            else:
                with self.backend.connect() as logbooks:
                    logbooks.save_logbook(book)
                with self._write() as raw, self._statement("post a job"):
                    raw.execute(JOBS.insert(), row)
                    self._notify_in(raw)
        except ConflictError:
            held = None if job.key is None else self._find_key(job.key)
            if held is None:
                raise
            if not self._shared:  # the book written for the duplicate is not needed
                with self.backend.connect() as logbooks:
                    logbooks.destroy_logbook(book.uuid)
            return held
        return job

    def _find_key(self, key: str) -> Job | None:
        with self._read() as raw, self._statement("find a job by key"):
            if raw is None:
                return None
            found = raw.execute(sa.select(*_COLUMNS).where(JOBS.c.held_key == key)).first()
            return None if found is None else _job(found)

    def _get(self, job_uuid: str) -> Job | None:
        with self._read() as raw, self._statement("read a job"):
            if raw is None:
                return None
            found = raw.execute(sa.select(*_COLUMNS).where(JOBS.c.uuid == job_uuid)).first()
            return None if found is None else _job(found)

    def _list(self, state: str | None, limit: int | None) -> list[Job]:
        with self._read() as raw, self._statement("list jobs"):
            if raw is None:
                return []
            query = sa.select(*_COLUMNS).order_by(JOBS.c.id.desc())
            if state is not None:
                query = query.where(JOBS.c.state == state)
            if limit is not None:
                query = query.limit(limit)
            return [_job(row) for row in raw.execute(query)]

    def _change(
        self,
        job_uuid: str,
        from_states: tuple[str, ...],
        owner: str | None,
        changes: dict[str, Any],
    ) -> bool:
        values = {
            name: _clock(self._dialect, value.seconds) if isinstance(value, Later) else value
            for name, value in changes.items()
        }
        values["updated_at"] = utcnow()
        if values.get("attempts") == -1:
            values["attempts"] = JOBS.c.attempts - 1
        new_state = values.get("state")
        if new_state in ENDED:
            values["held_key"] = None
        elif new_state == READY:
            values["held_key"] = JOBS.c.key
        query = JOBS.update().where(JOBS.c.uuid == job_uuid, JOBS.c.state.in_(from_states))
        if owner is not None:
            query = query.where(JOBS.c.owner == owner)
        try:
            with self._write() as raw, self._statement("change a job"):
                changed = raw.execute(query.values(**values)).rowcount == 1
                if changed and new_state == READY:
                    self._notify_in(raw)
                return changed
        except ConflictError as error:
            raise ValueError(key_held(job_uuid)) from error

    # ---- conductor side ---------------------------------------------------------------
    def claim(self, owner: str, lease: float) -> Job | None:
        """Claim the best job available now (priority, then age): READY, or a lapsed claim."""
        with self._write() as raw, self._statement("claim a job"):
            found = [row for pick in _picks(self._now()) if (row := raw.execute(pick).first())]
            if not found:
                return None
            picked = min(found, key=lambda row: (-row.priority, row.id)).id
            values = {
                "state": CLAIMED,
                "owner": owner,
                "attempts": JOBS.c.attempts + 1,
                "claim_expires_at": _clock(self._dialect, lease),
                "updated_at": utcnow(),
            }
            raw.execute(JOBS.update().where(JOBS.c.id == picked).values(**values))
            row = raw.execute(sa.select(*_COLUMNS).where(JOBS.c.id == picked)).first()
            return None if row is None else _job(row)

    def _now(self) -> sa.ColumnElement[Any]:
        return _clock(self._dialect, 0.0)

    def _lapsed_at_max(self) -> list[tuple[str, str, int]]:
        now = self._now()
        with self._read() as raw, self._statement("find lapsed claims"):
            if raw is None:
                return []
            query = sa.select(JOBS.c.uuid, JOBS.c.owner, JOBS.c.attempts).where(
                JOBS.c.state == CLAIMED,
                JOBS.c.claim_expires_at <= now,
                JOBS.c.attempts >= JOBS.c.max_attempts,
            )
            return [(uuid, owner or "", attempts) for uuid, owner, attempts in raw.execute(query)]

    def idle(self) -> Idle:
        """What is left to claim, now or later (lapsed on the server's clock)."""
        lapsed = sa.case((JOBS.c.claim_expires_at <= self._now(), 1), else_=0)
        at_max = sa.case((JOBS.c.attempts >= JOBS.c.max_attempts, 1), else_=0)
        with self._read() as raw, self._statement("look for work"):
            if raw is None:
                return Idle(0, 0, None, (), 0)
            ready, next_at = raw.execute(
                sa.select(func.count(), func.min(JOBS.c.available_at)).where(JOBS.c.state == READY)
            ).one()
            claimed = raw.execute(
                sa.select(JOBS.c.uuid, JOBS.c.owner, lapsed, at_max).where(JOBS.c.state == CLAIMED)
            ).all()
        return idle_of(int(ready), next_at, [tuple(row) for row in claimed])

    def clear_all(self) -> None:
        """Delete every job of this board (its logbooks stay)."""
        with self._read() as probe:
            if probe is None:
                return
        with self._write() as raw, self._statement("clear the jobs"):
            raw.execute(JOBS.delete())

    # ---- wake-ups -----------------------------------------------------------------------
    def _notify_in(self, raw: SAConnection) -> None:
        if self._dialect == "postgresql":
            raw.execute(sa.text(f"NOTIFY {_CHANNEL}"))

    def wait_for_work(self, timeout: float) -> None:
        """Sleep up to ``timeout`` s; on PostgreSQL a NOTIFY (post, hand-back) wakes it."""
        if self._dialect != "postgresql":
            super().wait_for_work(timeout)
            return
        with self._listen_lock:
            try:
                listener = self._listening()
                for _ in listener.notifies(timeout=max(0.0, timeout), stop_after=1):
                    break
            except Exception:  # the server blinked: poll this time, listen again next time
                self._drop_listener()
                super().wait_for_work(timeout)

    def _listening(self) -> Any:
        if self._listener is None or self._listener.closed:
            import psycopg

            url = self.store.engine.url.set(drivername="postgresql", query={})
            conninfo = url.render_as_string(hide_password=False)
            self._listener = psycopg.connect(conninfo, autocommit=True, connect_timeout=5)
            self._listener.execute(f"LISTEN {_CHANNEL}")
        return self._listener

    def _drop_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(Exception):
                listener.close()

    def _close(self) -> None:
        self._drop_listener()
        self._conn.close()
        if self._owns_store:
            self.store.close()


def idle_of(ready: int, next_at: Any, claimed: list[tuple[Any, ...]]) -> Idle:
    """An ``Idle`` of READY's count and first time, and (uuid, owner, lapsed, at max) claims."""
    if next_at is not None and next_at.tzinfo is None:
        next_at = next_at.replace(tzinfo=UTC)
    return Idle(
        ready=ready,
        lapsed=sum(int(ran_out) for _, _, ran_out, _ in claimed),
        next_at=next_at,
        claimed=tuple((uuid, owner or "") for uuid, owner, _, _ in claimed),
        lapsed_at_max=sum(int(ran_out) * int(spent) for _, _, ran_out, spent in claimed),
    )


def store_where(store: SQLBackend) -> str:
    """Where the store is, for messages (password masked)."""
    return store.address.where
