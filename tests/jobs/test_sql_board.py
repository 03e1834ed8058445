"""SQL boards: their own migrations, reads that create nothing, one-transaction posts."""

from __future__ import annotations

import dataclasses
import select
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import ledgerflow as lf
from ledgerflow.jobs import Job, schema
from ledgerflow.jobs.model import PostRequest
from ledgerflow.jobs.sql import SQLBoard
from ledgerflow.models import LogBook
from ledgerflow.persistence.sql import migrate
from ledgerflow.persistence.sql.backend import SQLBackend
from tests.persistence.conftest import SQL_KINDS, private_database

FACTORY = "pkg.mod:build"


@pytest.fixture(params=SQL_KINDS)
def fresh_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new empty database of each SQL engine."""
    with private_database(request.param, tmp_path) as uri:
        yield uri


def _sql_board(uri: str, **kwargs: object) -> SQLBoard:
    board = lf.open_board(uri, **kwargs)  # type: ignore[arg-type]
    assert isinstance(board, SQLBoard)
    return board


def _tables(board: SQLBoard) -> set[str]:
    with board.store.engine.connect() as conn:
        return set(sa.inspect(conn).get_table_names())


def test_job_tables_have_their_own_history(fresh_uri: str) -> None:
    with _sql_board(fresh_uri) as board:
        assert {schema.VERSION_TABLE, migrate.VERSION_TABLE, "ledgerflow_jobs"} <= _tables(board)
        with board.store.engine.connect() as conn:
            assert schema.current(conn) == schema.HEAD
            assert migrate.schema_status(conn).up_to_date
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "include_name": lambda name, kind, _: (
                        kind != "table" or name == "ledgerflow_jobs"
                    ),
                },
            )
            assert list(compare_metadata(context, schema.metadata)) == []
    with _sql_board(fresh_uri) as again:  # idempotent
        assert again.jobs() == []


def _upgrade_jobs_to(uri: str, revision: str) -> None:
    """Put the job tables at ``revision`` only, as an older ledgerflow left them."""
    from alembic.config import Config
    from alembic.operations import Operations
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(Path(schema.__file__).with_name("migrations")))
    script = ScriptDirectory.from_config(config)
    store = lf.open_backend(uri)
    assert isinstance(store, SQLBackend)
    with store.engine.begin() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "version_table": schema.VERSION_TABLE,
                "script": script,
                "fn": lambda rev, _: script._upgrade_revs(revision, rev),
            },
        )
        with Operations.context(context):
            context.run_migrations()
    store.close()


def test_job_tables_of_an_older_revision_are_read_then_migrated(fresh_uri: str) -> None:
    with lf.open_backend(fresh_uri) as backend, backend.connect() as conn:
        conn.upgrade()
    _upgrade_jobs_to(fresh_uri, "j0001")
    with _sql_board(fresh_uri, create=False) as reader:  # read as it stands, changed by none
        assert reader.jobs() == []
        with reader.store.engine.connect() as conn:
            assert schema.current(conn) == "j0001"
    with _sql_board(fresh_uri) as board:
        job = board.post(FACTORY, priority=1)
        with board.store.engine.connect() as conn:
            assert schema.current(conn) == schema.HEAD
            indexes = {index["name"] for index in sa.inspect(conn).get_indexes("ledgerflow_jobs")}
        assert "ix_ledgerflow_jobs_claim_order" in indexes
        assert "ix_ledgerflow_jobs_state_priority_id" not in indexes
        claimed = board.claim("me", 30.0)
        assert claimed is not None and claimed.uuid == job.uuid


def test_reading_a_store_without_job_tables_creates_nothing(fresh_uri: str) -> None:
    with lf.open_backend(fresh_uri) as backend, backend.connect() as conn:
        conn.upgrade()
    board = _sql_board(fresh_uri, create=False)
    with board:
        assert board.jobs() == []
        assert board.idle().ready == 0
        assert "ledgerflow_jobs" not in _tables(board)


def test_reading_a_missing_sqlite_file_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "none.db"
    with _sql_board(f"sqlite:///{path}", create=False) as board:
        assert board.jobs() == []
    assert not path.exists()


def test_post_is_one_transaction_with_the_logbook(
    fresh_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _sql_board(fresh_uri) as board:
        assert board.backend is board.store
        first = board.post(FACTORY)
        new_records = board._new_records

        def same_job_uuid(request: PostRequest) -> tuple[LogBook, Job]:
            book, job = new_records(request)
            return book, dataclasses.replace(job, uuid=first.uuid)

        # The job's INSERT fails on the server, after the book's and the flow's were sent.
        monkeypatch.setattr(board, "_new_records", same_job_uuid)
        with pytest.raises(lf.ConflictError):
            board.post(FACTORY)
        assert [job.uuid for job in board.jobs()] == [first.uuid]
        with board.backend.connect() as conn:
            assert [book.uuid for book in conn.get_logbooks()] == [first.book_uuid]


def test_board_and_logbooks_in_different_stores(tmp_path: Path, postgres_uri: str) -> None:
    logbooks = f"sqlite:///{tmp_path / 'logbooks.db'}"
    with _sql_board(postgres_uri, backend=logbooks) as board:
        board.clear_all()
        job = board.post(FACTORY, key="separate")
        assert board.post(FACTORY, key="separate").uuid == job.uuid
        with lf.open_backend(logbooks) as backend, backend.connect() as conn:
            assert [book.uuid for book in conn.get_logbooks()] == [job.book_uuid]
        board.clear_all()


def test_unknown_scheme_lists_board_schemes() -> None:
    with pytest.raises(lf.BackendNotFound, match="redis") as caught:
        lf.open_board("ftp://example.com/x")
    assert "postgresql" in str(caught.value) and "memory" in str(caught.value)
    with pytest.raises(lf.BackendNotFound):
        lf.open_board("file:///tmp/x")


def test_redis_needs_a_backend() -> None:
    with pytest.raises(ValueError, match="backend="):
        lf.open_board("redis://127.0.0.1:6379/9")


def test_a_post_wakes_a_conductor_waiting_for_work_on_postgresql(postgres_uri: str) -> None:
    with _sql_board(postgres_uri) as waiting, _sql_board(postgres_uri) as posting:
        posting.cancel(posting.post(FACTORY).uuid)  # a board's first post checks the schema
        waiting._listening()  # LISTEN now: a NOTIFY from here on waits in its queue
        woke = threading.Event()

        def wait() -> None:
            waiting.wait_for_work(60.0)
            woke.set()

        waiter = threading.Thread(target=wait)
        started = time.monotonic()
        waiter.start()
        job = posting.post(FACTORY)
        assert woke.wait(30.0), "the post's NOTIFY did not wake the waiting board"
        waiter.join()
        assert time.monotonic() - started < 30.0
        posting.cancel(job.uuid)


def test_threads_that_ended_close_their_connection_on_postgresql(postgres_uri: str) -> None:
    with _sql_board(postgres_uri) as board:
        board.clear_all()
        board.cancel(board.post(FACTORY).uuid)  # a board's first post checks the schema
        opened: list[Any] = []
        for _ in range(8):  # a thread per post, one after the other
            thread = threading.Thread(
                target=lambda: opened.append(board._connection()) or board.post(FACTORY)
            )
            thread.start()
            thread.join()
        assert [conn.closed for conn in opened] == [True] * 7 + [False]
        assert len(board.jobs(state="READY")) == 8
        board.clear_all()


def test_a_connection_the_server_ended_while_idle_is_replaced_on_postgresql(
    postgres_uri: str,
) -> None:
    import psycopg

    with _sql_board(postgres_uri) as board:
        board.clear_all()
        board.cancel(board.post(FACTORY).uuid)  # a board's first post checks the schema
        pinned = board._connection()
        with psycopg.connect(board._conninfo(), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pinned.info.backend_pid,))
        # The server's goodbye has arrived once the socket is readable (an event, no sleep).
        assert select.select([pinned.fileno()], [], [], 30.0)[0]
        job = board.post(FACTORY)  # on a new connection, not an error
        assert board._connection() is not pinned
        assert board.get(job.uuid).state == "READY"
        board.clear_all()
