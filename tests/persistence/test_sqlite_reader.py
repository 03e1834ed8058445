"""The stdlib SQLite reader reads what the SQLAlchemy backend reads, record for record.

``TestBothReadPathsAgree`` runs the whole backend contract on a connection that writes
through the SQLAlchemy backend and sends every read to both the reader and the
SQLAlchemy backend, failing on the first answer (or error) that differs.
"""

from __future__ import annotations

import abc
import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import ledgerflow as lf
from ledgerflow import states
from ledgerflow.history import History
from ledgerflow.models import FlowDetail, LogBook, TaskDetail
from ledgerflow.persistence.base import Backend, Connection
from ledgerflow.persistence.sql.reader import SQLiteReader, sqlite_reader
from ledgerflow.testing import BackendConformance
from ledgerflow.testing.conformance import make_book

#: Reads both paths answer; every other call goes to the SQLAlchemy connection only.
READS = (
    "get_logbook",
    "get_logbooks",
    "get_flow_details",
    "get_task_details",
    "get_flows_for_book",
    "get_tasks_for_flow",
    "locate",
    "count_logbooks",
    "list_logbooks",
    "list_flows",
    "count_flows",
    "task_time_spans",
    "task_state_counts",
    "flow_state_counts",
    "validate",
)


def plain(value: Any) -> Any:
    """Records as their to_dict() (revisions included), containers item by item."""
    if isinstance(value, LogBook | FlowDetail | TaskDetail):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value


#: Every other method of the contract: the SQLAlchemy connection alone.
WRITES = (
    "upgrade",
    "save_logbook",
    "destroy_logbook",
    "destroy_task_details",
    "update_flow_details",
    "update_task_details",
    "update_details",
    "commit_details",
    "get_ownership",  # the server's clock: not a reader's business
    "change_ownership",
    "clear_all",
    "check",
    "purge_logbooks",
)


class Comparing(Connection):
    """Writes through ``sql``; each read asks ``reader`` and ``sql`` and checks they agree."""

    def __init__(self, sql: Connection, reader: Connection) -> None:
        self.sql, self.reader = sql, reader

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:  # type: ignore[override]
        """A snapshot on both."""
        with self.reader.snapshot(), self.sql.snapshot():
            yield

    def close(self) -> None:
        """Close both."""
        self.reader.close()
        self.sql.close()


def _compared(name: str) -> Callable[..., Any]:
    def call(self: Comparing, *args: Any, **kwargs: Any) -> Any:
        try:
            answer = getattr(self.reader, name)(*args, **kwargs)
        except Exception as exc:
            with pytest.raises(type(exc)):
                getattr(self.sql, name)(*args, **kwargs)
            raise
        assert plain(answer) == plain(getattr(self.sql, name)(*args, **kwargs)), name
        return answer

    return call


def _forwarded(name: str) -> Callable[..., Any]:
    def call(self: Comparing, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.sql, name)(*args, **kwargs)

    return call


for _name in READS:
    setattr(Comparing, _name, _compared(_name))
for _name in WRITES:
    setattr(Comparing, _name, _forwarded(_name))
abc.update_abstractmethods(Comparing)
assert not Comparing.__abstractmethods__, Comparing.__abstractmethods__


class ComparingBackend(Backend):
    """A SQLite file seen through both read paths."""

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        self.sql = lf.open_backend(uri)
        reader = sqlite_reader(uri)
        assert reader is not None
        self.reader = reader

    def connect(self) -> Connection:
        """A comparing connection."""
        return Comparing(self.sql.connect(), self.reader.connect())

    def close(self) -> None:
        """Close the SQLAlchemy backend."""
        self.sql.close()


class TestBothReadPathsAgree(BackendConformance):
    """The whole contract, every read answered by both paths."""

    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[Backend]:
        """An upgraded SQLite file behind both paths."""
        store = ComparingBackend(f"sqlite:///{tmp_path / 'both.db'}")
        with store.sql.connect() as conn:
            conn.upgrade()
        yield store
        store.close()


def _store(tmp_path: Path) -> tuple[str, list[LogBook]]:
    uri = f"sqlite:///{tmp_path / 'runs.db'}"
    books = []
    with lf.open_backend(uri) as backend, backend.connect() as conn:
        conn.upgrade()
        for index in range(7):
            book = make_book(f"run-{index}", flows=2, tasks=3)
            book.flows[0].state = (states.SUCCESS, states.RUNNING, states.FAILURE)[index % 3]
            task = book.flows[0].tasks[0]
            task.started_at = task.created_at + timedelta(seconds=index)
            task.finished_at = task.started_at + timedelta(seconds=2)
            books.append(conn.save_logbook(book))
    return uri, books


def test_the_read_model_answers_the_same_on_both_paths(tmp_path: Path) -> None:
    uri, books = _store(tmp_path)
    with ComparingBackend(uri) as backend, backend.connect() as conn:
        assert isinstance(conn, Comparing)
        with lf.open_backend(uri) as sql_backend, sql_backend.connect() as sql:
            reader = conn.reader
            paths = (History(reader), History(sql))
            for options in ({}, {"limit": 2}, {"state": "RUNNING"}, {"limit": 3, "offset": 2}):
                first, second = (h.books(**options) for h in paths)  # type: ignore[arg-type]
                assert [i.to_dict() for i in first.items] == [i.to_dict() for i in second.items]
                assert (first.total, first.next) == (second.total, second.next)
                flows = [h.flows(**options) for h in paths]  # type: ignore[arg-type]
                assert [i.to_dict() for i in flows[0].items] == [
                    i.to_dict() for i in flows[1].items
                ]
                assert flows[0].next == flows[1].next
            cursor = paths[0].flows(limit=3).next
            assert cursor is not None
            deep = [h.flows(limit=3, after=cursor) for h in paths]
            assert [i.flow.uuid for i in deep[0].items] == [i.flow.uuid for i in deep[1].items]
            for book in books:
                for uuid in (book.uuid, book.flows[1].uuid, book.flows[0].tasks[2].uuid):
                    assert paths[0].record(uuid).to_dict() == paths[1].record(uuid).to_dict()
            view = paths[0].flow(books[2].flows[0].uuid)
            assert view.lease == paths[1].flow(books[2].flows[0].uuid).lease
            assert view.book.to_dict() == paths[1].flow(books[2].flows[0].uuid).book.to_dict()


def test_only_a_plain_local_sqlite_uri_gets_the_reader(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    for uri in (f"sqlite:///{path}", f"sqlite+pysqlite:///{path}", "sqlite:///rel.db"):
        assert isinstance(sqlite_reader(uri), SQLiteReader), uri
    reader = sqlite_reader(f"sqlite:///{path}?synchronous=normal&busy_timeout=5")
    assert reader is not None and reader.busy_timeout_ms == 5
    for uri in (
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite://host/x.db",
        f"sqlite:///{path}?mode=ro",
        f"sqlite:///{path}?busy_timeout=soon",
        f"sqlite:///{path}?synchronous=off",
        f"sqlite:///{tmp_path}/a%20b.db",
        "sqlite:///file:x.db?uri=true",
        "postgresql://u@h/db",
        "memory://",
    ):
        assert sqlite_reader(uri) is None, uri


def _reader_conn(uri: str) -> Connection:
    reader = sqlite_reader(uri)
    assert reader is not None
    return reader.connect()


def test_a_missing_file_or_schema_reads_as_empty_and_nothing_is_created(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'none.db'}"
    with _reader_conn(uri) as conn:
        assert conn.list_logbooks() == [] and conn.count_flows() == 0
        with pytest.raises(lf.NotFound):
            conn.locate("no-such-uuid")
        with pytest.raises(lf.SchemaVersionError, match="does not exist"):
            conn.validate()
    assert list(tmp_path.iterdir()) == []
    sqlite3.connect(tmp_path / "none.db").execute("CREATE TABLE other (x)").connection.commit()
    with _reader_conn(uri) as conn:
        assert conn.count_logbooks() == 0 and conn.list_flows() == []
        with pytest.raises(lf.SchemaVersionError, match="no ledgerflow schema"):
            conn.validate()


def test_an_older_schema_asks_for_upgrade_and_a_newer_one_is_named(tmp_path: Path) -> None:
    uri, books = _store(tmp_path)
    db = sqlite3.connect(tmp_path / "runs.db", isolation_level=None)
    db.execute("UPDATE ledgerflow_alembic_version SET version_num = '0003'")
    with (
        _reader_conn(uri) as conn,
        pytest.raises(lf.SchemaVersionError, match=r"'0003'.*needs upgrade"),
    ):
        conn.get_logbook(books[0].uuid)
    db.execute("UPDATE ledgerflow_alembic_version SET version_num = '9999'")
    with _reader_conn(uri) as conn:
        with pytest.raises(lf.SchemaVersionError, match="newer version of ledgerflow"):
            conn.validate()
        assert conn.get_logbook(books[0].uuid).uuid == books[0].uuid  # as the SQL path reads


def test_it_never_writes(tmp_path: Path) -> None:
    uri, books = _store(tmp_path)
    with _reader_conn(uri) as conn:
        for write in (
            conn.upgrade,
            lambda: conn.save_logbook(make_book()),
            lambda: conn.destroy_logbook(books[0].uuid),
            conn.clear_all,
        ):
            with pytest.raises(lf.StorageError, match="read-only"):
                write()
    with lf.open_backend(uri) as backend, backend.connect() as sql:
        assert sql.count_logbooks() == len(books)


def _corrupt(path: Path, sql: str, *params: object) -> None:
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute(sql, params)


@pytest.mark.parametrize(
    ("column", "garbage"), [("meta", "{not json"), ("created_at", "yesterday-ish")]
)
def test_a_corrupt_row_is_a_corrupt_record_on_both_paths(
    tmp_path: Path, column: str, garbage: str
) -> None:
    uri, books = _store(tmp_path)
    bad = books[3].flows[0]
    _corrupt(
        tmp_path / "runs.db",
        f"UPDATE ledgerflow_flow_details SET {column} = ? WHERE uuid = ?",
        garbage,
        bad.uuid,
    )
    with lf.open_backend(uri) as backend:
        for conn in (_reader_conn(uri), backend.connect()):
            with conn:
                with pytest.raises(lf.CorruptRecordError, match=bad.uuid):
                    conn.get_flow_details(bad.uuid)
                with pytest.raises(lf.CorruptRecordError, match=bad.uuid):
                    conn.list_flows()
                assert conn.get_logbook(books[2].uuid).uuid == books[2].uuid


def test_a_file_that_is_not_a_database_is_a_corrupt_store(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not SQLite at all " * 200)
    with _reader_conn(f"sqlite:///{path}") as conn, pytest.raises(lf.CorruptStoreError):
        conn.list_logbooks()


def test_both_paths_page_flows_by_the_created_at_index(tmp_path: Path) -> None:
    from ledgerflow.persistence.sql import queries, reader
    from ledgerflow.persistence.sql.tables import FLOWS

    uri, books = _store(tmp_path)
    cursor = (books[3].flows[0].created_at, books[3].flows[0].uuid)
    params: list[Any] = []
    select = f"SELECT {reader._SELECT['flow']} FROM {FLOWS.name}"
    text = reader._limit(reader._paged(select, [], params, True, cursor), params, 50, 0)
    with lf.open_backend(uri) as backend, backend.engine.connect() as conn:  # type: ignore[attr-defined]
        statement = queries.keyset(
            conn, FLOWS, queries.flows(conn, None, None, None, None, False), True, cursor
        )
        compiled = statement.limit(50).compile(
            dialect=conn.dialect, compile_kwargs={"literal_binds": True}
        )
        sql_text = str(compiled)
    with contextlib.closing(sqlite3.connect(tmp_path / "runs.db")) as db:
        for sql, args in ((text, params), (sql_text, [])):
            plan = " ".join(str(row) for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", args))
            assert f"ix_{FLOWS.name}_created_at_uuid" in plan, plan
            assert "TEMP B-TREE" not in plan, plan  # no sort of every flow row
