"""SQL integrity: cascades, concurrent writers, query counts, big and corrupt records."""

from __future__ import annotations

import multiprocessing
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from tests.persistence.conftest import private_database

import ledgerflow as lf
from ledgerflow.persistence.sql.backend import SQLBackend
from ledgerflow.persistence.sql.tables import BOOKS, FLOWS, TASKS
from ledgerflow.testing.conformance import make_book


@pytest.fixture
def store(fresh_uri: str) -> Iterator[SQLBackend]:
    """An upgraded, private SQL store."""
    backend = lf.open_backend(fresh_uri)
    assert isinstance(backend, SQLBackend)
    with backend.connect() as conn:
        conn.upgrade()
    yield backend
    backend.close()


def _orphans(backend: SQLBackend) -> tuple[int, int]:
    with backend.engine.connect() as conn:
        flows = conn.execute(
            sa.select(sa.func.count())
            .select_from(FLOWS)
            .where(~FLOWS.c.book_uuid.in_(sa.select(BOOKS.c.uuid)))
        ).scalar_one()
        tasks = conn.execute(
            sa.select(sa.func.count())
            .select_from(TASKS)
            .where(~TASKS.c.flow_uuid.in_(sa.select(FLOWS.c.uuid)))
        ).scalar_one()
    return int(flows), int(tasks)


def _count(backend: SQLBackend, table: sa.Table) -> int:
    with backend.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_destroy_cascades_in_the_database_leaving_no_orphans(store: SQLBackend) -> None:
    with store.connect() as conn:
        doomed = conn.save_logbook(make_book("doomed", flows=2, tasks=3))
        kept = conn.save_logbook(make_book("kept", flows=1, tasks=2))
        conn.destroy_logbook(doomed.uuid)
        assert (_count(store, FLOWS), _count(store, TASKS)) == (1, 2)
        assert _orphans(store) == (0, 0)
        assert conn.get_logbook(kept.uuid).to_dict() == kept.to_dict()
    # the cascade is the database's, not ours: a plain DELETE of the book row is enough
    with store.engine.begin() as raw:
        raw.execute(BOOKS.delete().where(BOOKS.c.uuid == kept.uuid))
    assert (_count(store, FLOWS), _count(store, TASKS)) == (0, 0)


def test_foreign_keys_refuse_orphans(store: SQLBackend) -> None:
    task_row = {
        "uuid": "orphan", "flow_uuid": "no-such-flow", "name": "t", "version": "1.0",
        "state": "PENDING", "attempts": 0, "revision": 1,
        "created_at": lf.TaskDetail("x").created_at, "updated_at": lf.TaskDetail("x").updated_at,
    }  # fmt: skip
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as raw:
        raw.execute(TASKS.insert(), task_row)


def test_insertion_order_is_kept(store: SQLBackend) -> None:
    with store.connect() as conn:
        book = lf.LogBook("order")
        flows = [lf.FlowDetail(name) for name in ("zeta", "alpha", "mid")]
        for flow in flows:
            book.add(flow)
            for name in ("z", "a", "m", "b"):
                flow.add(lf.TaskDetail(f"{flow.name}-{name}"))
        conn.save_logbook(book)
        late = lf.TaskDetail("0-late")
        flows[0].add(late)
        conn.update_flow_details(flows[0])
        loaded = conn.get_logbook(book.uuid)
        assert [f.name for f in loaded] == ["zeta", "alpha", "mid"]
        assert [t.name for t in loaded.flows[0]] == [t.name for t in flows[0]]


def _count_queries(backend: SQLBackend, action: Any, selects_only: bool = False) -> int:
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    sa.event.listen(backend.engine, "before_cursor_execute", record)
    try:
        action()
    finally:
        sa.event.remove(backend.engine, "before_cursor_execute", record)
    if selects_only:
        statements = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    return len(statements)


def test_loading_a_big_book_takes_a_constant_number_of_queries(store: SQLBackend) -> None:
    with store.connect() as conn:
        small = conn.save_logbook(make_book("small", flows=1, tasks=10))
        big = conn.save_logbook(make_book("big", flows=1, tasks=10_000))
        conn.get_logbook(small.uuid)  # first read checks the schema once
        small_queries = _count_queries(store, lambda: conn.get_logbook(small.uuid))
        big_queries = _count_queries(store, lambda: conn.get_logbook(big.uuid))
        # book, flows, tasks, and the statement that opens their one read transaction
        assert big_queries == small_queries <= 4
        assert _count_queries(store, lambda: conn.get_logbook(big.uuid), selects_only=True) == 3
        assert len(conn.get_logbook(big.uuid).flows[0]) == 10_000


def _server_packet_limit(store: SQLBackend) -> int | None:
    with store.connect() as conn:
        conn.count_logbooks()  # a connection reads the server's limit
    return None if store.packets is None else store.packets.limit


def test_sixteen_megabyte_results_round_trip(store: SQLBackend) -> None:
    """Round-trips where the server takes it; MySQL at its default refuses it before writing."""
    book = make_book(tasks=1)
    task = book.flows[0].tasks[0]
    task.result = {"blob": "é" * (8 * 1024 * 1024)}  # 16 MB of UTF-8
    task.checkpoint = "c" * (16 * 1024 * 1024)
    limit = _server_packet_limit(store)
    with store.connect() as conn:
        if limit is not None and limit < 17 * 2**20:
            with pytest.raises(lf.StorageError, match="max_allowed_packet"):
                conn.save_logbook(book)
            assert conn.count_logbooks() == 0
            return
        conn.save_logbook(book)
        loaded = conn.get_task_details(task.uuid)
        assert loaded.result == task.result
        assert loaded.checkpoint == task.checkpoint


@pytest.mark.parametrize("sql_kind", ["mysql"])
def test_a_value_above_max_allowed_packet_is_refused_before_anything_is_written(
    store: SQLBackend,
) -> None:
    limit = _server_packet_limit(store)
    assert store.packets is not None and limit is not None
    store.packets.limit = 2 * 2**20  # what a server at a 2 MB setting would take (read-only here)
    with store.connect() as conn:
        book = conn.save_logbook(make_book(tasks=2))
        before = conn.get_logbook(book.uuid).to_dict()
        task = book.flows[0].tasks[1]
        task.result = '"quoted"\\' * (200 * 1024)  # 2 MB of text, 2.6 MB once escaped
        with pytest.raises(lf.StorageError) as caught:
            conn.update_details(book.flows[0], task)
        message = str(caught.value)
        assert task.uuid in message and "result" in message
        assert "max_allowed_packet of 2.0 MB" in message and "SET GLOBAL" in message
        assert "nothing was written" in message
        new = make_book("big", tasks=1)
        new.flows[0].tasks[0].checkpoint = "c" * (3 * 2**20)
        with pytest.raises(lf.StorageError, match="checkpoint"):
            conn.save_logbook(new)
        assert conn.count_logbooks() == 1
        assert conn.get_logbook(book.uuid).to_dict() == before
        task.result = "r" * (1 * 2**20)  # under the limit: written
        conn.update_task_details(task)
        assert conn.get_task_details(task.uuid).result == task.result


def test_a_corrupt_record_is_named_and_the_others_still_load(store: SQLBackend) -> None:
    with store.connect() as conn:
        book = conn.save_logbook(make_book(tasks=2))
        other = conn.save_logbook(make_book("other"))
        bad, good = book.flows[0].tasks
        with store.engine.begin() as raw:
            raw.execute(TASKS.update().where(TASKS.c.uuid == bad.uuid).values(result="{not json"))
        with pytest.raises(lf.CorruptRecordError, match=bad.uuid):
            conn.get_task_details(bad.uuid)
        with pytest.raises(lf.CorruptRecordError, match=bad.uuid):
            conn.get_logbook(book.uuid)
        assert conn.get_task_details(good.uuid).to_dict() == good.to_dict()
        assert conn.get_logbook(other.uuid).to_dict() == other.to_dict()
        assert len(conn.get_logbooks(lazy=True)) == 2


def test_an_unknown_serialization_format_is_a_corrupt_record(store: SQLBackend) -> None:
    with store.connect() as conn:
        book = conn.save_logbook(make_book(tasks=1))
        task = book.flows[0].tasks[0]
        with store.engine.begin() as raw:
            raw.execute(TASKS.update().where(TASKS.c.uuid == task.uuid).values(format="pickle"))
        with pytest.raises(lf.CorruptRecordError, match=task.uuid):
            conn.get_task_details(task.uuid)


# ---- two processes on one SQLite file -----------------------------------------------------
def _increment(uri: str, task_uuid: str, times: int, ready: Any, results: Any) -> None:
    """Read-modify-write a counter ``times`` times, retrying on ConflictError."""
    conflicts = 0
    with lf.open_backend(uri) as backend, backend.connect() as conn:
        ready.wait()
        for _ in range(times):
            while True:
                task = conn.get_task_details(task_uuid)
                task.meta["n"] = task.meta.get("n", 0) + 1
                try:
                    conn.update_task_details(task)
                    break
                except lf.ConflictError:
                    conflicts += 1
    results.put(conflicts)


def test_two_processes_on_one_sqlite_file_never_lose_an_update(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'shared.db'}"
    with lf.open_backend(uri) as backend, backend.connect() as conn:
        conn.upgrade()
        book = conn.save_logbook(make_book(tasks=1))
        task_uuid = book.flows[0].tasks[0].uuid
    context = multiprocessing.get_context("spawn")
    ready, results = context.Barrier(2), context.Queue()
    times = 40
    workers = [
        context.Process(target=_increment, args=(uri, task_uuid, times, ready, results))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    conflicts = [results.get(timeout=5) for _ in workers]
    assert len(conflicts) == 2  # both workers finished their increments
    with lf.open_backend(uri) as backend, backend.connect() as conn:
        stored = conn.get_task_details(task_uuid)
    assert stored.meta["n"] == 2 * times  # every increment survived
    assert stored.revision == 1 + 2 * times


def test_inserting_an_existing_record_is_a_conflict_and_changes_nothing(store: SQLBackend) -> None:
    from ledgerflow.persistence import records

    with store.connect() as conn:
        book = conn.save_logbook(make_book())
        row = {**records.book_to_row(lf.LogBook("intruder", uuid=book.uuid)), "revision": 1}
        with pytest.raises(lf.ConflictError):
            conn._insert("book", [row])
        assert conn.get_logbook(book.uuid).to_dict() == book.to_dict()


@pytest.mark.parametrize("memory", [False, True], ids=["store", "sqlite-memory"])
def test_one_connection_shared_by_threads(store: SQLBackend, memory: bool) -> None:
    import threading

    backend = SQLBackend("sqlite://") if memory else store
    with backend.connect() as conn:
        conn.upgrade()
        book = conn.save_logbook(make_book(tasks=8))
        errors: list[BaseException] = []

        def work(task: lf.TaskDetail) -> None:
            try:
                for attempt in range(20):
                    task.attempts = attempt
                    conn.update_task_details(task)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(t,)) for t in book.flows[0]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert [t.revision for t in conn.get_tasks_for_flow(book.flows[0].uuid)] == [21] * 8
    if memory:
        backend.close()


def test_a_name_utf8_cannot_hold_is_a_serialization_error(store: SQLBackend) -> None:
    with store.connect() as conn:
        book = lf.LogBook("half \ud800 surrogate")
        with pytest.raises(lf.SerializationError):
            conn.save_logbook(book)
        with pytest.raises(lf.NotFound):
            conn.get_logbook(book.uuid)
        assert conn.save_logbook(lf.LogBook("fine")).revision == 1


def test_update_details_failing_midway_rolls_back_and_the_store_stays_usable(
    store: SQLBackend,
) -> None:
    with store.connect() as conn:
        book = conn.save_logbook(make_book(tasks=2))
        first, second = book.flows[0].tasks
        before = conn.get_task_details(first.uuid).to_dict()
        first.result = "must not land alone"
        second.name = "lone \ud800 surrogate"  # no UTF-8 for it: the second UPDATE fails
        with pytest.raises(lf.LedgerflowError):
            conn.update_details(first, second)
        assert conn.get_task_details(first.uuid).to_dict() == before
        assert (first.revision, second.revision) == (1, 1)
        second.name = "fixed"
        conn.update_details(first, second)  # no transaction was left open
        assert (first.revision, second.revision) == (2, 2)
        assert conn.get_logbook(book.uuid).to_dict() == book.to_dict()


def test_sqlite_write_waiting_on_another_writer_gives_up_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    uri = f"sqlite:///{path}?busy_timeout=200"
    with lf.open_backend(uri) as backend, backend.connect() as conn:
        conn.upgrade()
        book = conn.save_logbook(make_book(tasks=1))
        task = book.flows[0].tasks[0]
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        task.result = "late"
        with pytest.raises(lf.StorageError, match="locked"):
            conn.update_details(task)
        assert task.revision == 1
        other.execute("ROLLBACK")
        other.close()
        conn.update_details(task)
        assert conn.get_task_details(task.uuid).result == "late"
        assert task.revision == 2


def test_postgresql_write_after_the_server_dropped_the_connection(tmp_path: Path) -> None:
    with (
        private_database("postgresql", tmp_path) as uri,
        lf.open_backend(uri) as backend,
        backend.connect() as conn,
    ):
        conn.upgrade()
        book = conn.save_logbook(make_book(tasks=1))
        task = book.flows[0].tasks[0]
        task.result = "first"
        conn.update_details(task)  # the connection this thread keeps is now open
        with backend.engine.connect() as admin:  # e.g. a server restart or a failover
            admin.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        task.result = "second"
        with pytest.raises(lf.StorageError, match="cannot reach the postgresql server"):
            conn.update_details(task)
        assert task.revision == 2
        conn.update_details(task)  # a new connection, and the write lands
        assert task.revision == 3
        assert conn.get_task_details(task.uuid).result == "second"
