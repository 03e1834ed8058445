"""Board fixtures: one empty board of each of the five kinds, on real servers.

Redis tests use databases 9 to 12 of the server (never 0), flushed at the start and
the end of the session.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ledgerflow.jobs import JobBoard, open_board
from tests.conftest import IN_CI

BOARDS = ["memory", "sqlite", "postgresql", "mysql", "redis"]
REDIS_DBS = (9, 10, 11, 12)
REDIS_URI = "redis://127.0.0.1:6379/{db}"


def _flush_redis() -> None:
    import redis

    for db in REDIS_DBS:
        client = redis.Redis.from_url(REDIS_URI.format(db=db), socket_timeout=5)
        with client:
            client.flushdb()


@pytest.fixture(scope="session")
def redis_uri() -> Iterator[str]:
    """URI of Redis database 9, flushed before and after the session."""
    import redis

    try:
        _flush_redis()
    except redis.RedisError as exc:
        message = f"Redis at 127.0.0.1:6379 is not reachable ({exc}); start it or unset CI"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield REDIS_URI.format(db=REDIS_DBS[0])
    finally:
        _flush_redis()


def board_uris(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | None]:
    """(board URI, backend URI or None) of an empty board of ``kind``."""
    if kind == "memory":
        return "memory://", None
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'board.db'}", None
    if kind == "redis":
        uri: str = request.getfixturevalue("redis_uri")
        return uri, f"sqlite:///{tmp_path / 'logbooks.db'}"
    uri = request.getfixturevalue("postgres_uri" if kind == "postgresql" else "mysql_uri")
    return uri, None


@pytest.fixture(params=BOARDS)
def board_kind(request: pytest.FixtureRequest) -> str:
    """Each board kind in turn."""
    kind: str = request.param
    return kind


@pytest.fixture
def board(board_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobBoard]:
    """An empty board of each kind; jobs and logbooks are cleared before and after."""
    uri, backend = board_uris(board_kind, request, tmp_path)
    the_board = open_board(uri, backend=backend)
    _clear(the_board)
    try:
        yield the_board
    finally:
        _clear(the_board)
        the_board.close()


def _clear(board: JobBoard) -> None:
    board.clear_all()
    with board.backend.connect() as conn:
        conn.clear_all()


@pytest.fixture
def pg_board(postgres_uri: str) -> Iterator[JobBoard]:
    """The session's PostgreSQL database as a board, emptied before and after."""
    board = open_board(postgres_uri)
    board.clear_all()
    with board.backend.connect() as conn:
        conn.clear_all()
    yield board
    board.clear_all()
    with board.backend.connect() as conn:
        conn.clear_all()
    board.close()
