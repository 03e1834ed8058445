"""``lf.open_board``: a URI to a board, its schema (and the logbook one) made ready."""

from __future__ import annotations

from typing import Final

from ledgerflow.errors import BackendNotFound
from ledgerflow.jobs.board import JobBoard
from ledgerflow.persistence.base import Backend
from ledgerflow.persistence.memory import MemoryBackend
from ledgerflow.persistence.registry import open_backend, scheme_of

__all__ = ["BOARD_SCHEMES", "board_scheme", "open_board"]

_SQL: Final = ("sqlite", "postgresql", "postgres", "mysql", "mariadb")
BOARD_SCHEMES: Final = ("memory", *_SQL, "redis")


def _backend(backend: Backend | str | None, default: str | None) -> tuple[Backend, bool]:
    """(backend, whether the board opened it and so closes it)."""
    if isinstance(backend, Backend):
        return backend, False
    if backend is None and default is None:
        return MemoryBackend(), True
    target = backend if backend is not None else default
    if not isinstance(target, str):
        raise TypeError(f"backend must be a Backend, a URI or None, not {type(target).__name__}")
    return open_backend(target), True


def board_scheme(uri: str) -> str:
    """The board scheme of ``uri``; BackendNotFound listing the board schemes."""
    if not isinstance(uri, str):
        raise TypeError(f"a board URI must be a string, not {type(uri).__name__}")
    try:
        scheme = scheme_of(uri)
    except BackendNotFound:
        scheme = ""
    if scheme not in BOARD_SCHEMES:
        raise BackendNotFound(
            f"no job board for {uri.split('://', 1)[0]!r}://; board schemes: "
            f"{', '.join(BOARD_SCHEMES)}"
        )
    return scheme


def open_board(uri: str, *, backend: Backend | str | None = None, create: bool = True) -> JobBoard:
    """Open the board at ``uri``; ``create=False`` (reading commands) creates no tables."""
    scheme = board_scheme(uri)
    if scheme == "memory":
        logbooks, owned = _backend(backend, None)
        from ledgerflow.jobs.memory import MemoryBoard

        board: JobBoard = MemoryBoard(logbooks, owns_backend=owned)
        if create:
            with logbooks.connect() as conn:
                conn.upgrade()
        return board
    if scheme == "redis":
        if backend is None:
            raise ValueError(
                "a Redis board needs backend=: the logbooks (and the authoritative fence) "
                "live in a logbook store, e.g. open_board('redis://…', backend='postgresql://…')"
            )
        from ledgerflow.jobs.redis import RedisBoard

        logbooks, owned = _backend(backend, None)
        redis_board = RedisBoard(uri, logbooks, owns_backend=owned)
        if create:
            with logbooks.connect() as conn:
                conn.upgrade()
        return redis_board
    return _sql_board(uri, backend, create)


def _sql_board(uri: str, backend: Backend | str | None, create: bool) -> JobBoard:
    from ledgerflow.jobs.sql import SQLBoard
    from ledgerflow.persistence.sql.backend import SQLBackend

    opened = open_backend(uri)
    assert isinstance(opened, SQLBackend)
    store: SQLBackend = opened
    owns_store = True
    logbooks: Backend
    if backend is None:
        logbooks, owns_backend = store, False
    else:
        logbooks, owns_backend = _backend(backend, None)
        if isinstance(logbooks, SQLBackend) and logbooks.engine.url == store.engine.url:
            opened.close()  # one database: share its backend, so post is one transaction
            store, owns_store = logbooks, owns_backend
    kind = SQLBoard
    if store.address.backend_name == "postgresql":
        from ledgerflow.jobs.postgres import PostgresBoard

        kind = PostgresBoard
    board = kind(store, logbooks, owns_store=owns_store, owns_backend=owns_backend)
    try:
        if create:
            board.upgrade()
            if logbooks is not store:
                with logbooks.connect() as conn:
                    conn.upgrade()
    except BaseException:
        board.close()
        raise
    return board
