"""Keep the books of unfinished jobs out of ``lf.purge`` (its ``BOOK_GUARDS`` hook).

A purge sees only the logbook store.  Where the job table lives in that same SQL
database (the default board), the guard reads it there; boards opened in this process
over that store (any kind) are asked too.  A board elsewhere that this process does
not hold open cannot be seen from the store: its READY jobs' flows are PENDING and its
CLAIMED jobs' flows unfinished in nearly every case, which a purge refuses anyway.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

from ledgerflow.jobs.model import CLAIMED, READY

if TYPE_CHECKING:
    from ledgerflow.jobs.board import JobBoard
    from ledgerflow.persistence.base import Backend, Connection

__all__ = ["held_books", "register"]

_boards: weakref.WeakSet[JobBoard] = weakref.WeakSet()
_lock = threading.Lock()


def register(board: JobBoard) -> None:
    """Let purges in this process ask ``board`` about the books its jobs name."""
    with _lock:
        _boards.add(board)


def _backend_store(backend: Backend) -> object:
    engine = getattr(backend, "engine", None)
    return engine.url if engine is not None else getattr(backend, "_store", backend)


def _connection_store(conn: Connection) -> object:
    backend = getattr(conn, "_backend", None)  # SQL
    if backend is not None:
        return _backend_store(backend)
    return getattr(conn, "_s", None) or getattr(conn, "_store", None)  # memory, file


def _same_store(board_backend: Backend, conn: Connection) -> bool:
    """Whether the board's logbooks are the store ``conn`` reads (built-in backends)."""
    store = _connection_store(conn)
    return store is not None and store == _backend_store(board_backend)


def _from_sql(conn: Connection, book_uuids: Sequence[str]) -> set[str]:
    reading = getattr(conn, "_reading", None)
    if reading is None:
        return set()
    import sqlalchemy as sa  # a SQL connection: SQLAlchemy is loaded already

    from ledgerflow.jobs import schema

    with reading() as raw:
        if raw is None or schema.current(raw) is None:
            return set()
        jobs = schema.JOBS
        query = sa.select(jobs.c.book_uuid).where(
            jobs.c.book_uuid.in_(list(book_uuids)), jobs.c.state.in_((READY, CLAIMED))
        )
        return {uuid for (uuid,) in raw.execute(query)}


def held_books(conn: Connection, book_uuids: Sequence[str]) -> Collection[str]:
    """The books among ``book_uuids`` that a READY or CLAIMED job names."""
    held = _from_sql(conn, book_uuids) if book_uuids else set()
    with _lock:
        boards = [board for board in _boards if _same_store(board.backend, conn)]
    wanted = set(book_uuids)
    for board in boards:
        for state in (READY, CLAIMED):
            held.update(job.book_uuid for job in board.jobs(state=state) if job.book_uuid in wanted)
    return held
