"""``Connection.check()`` names each corrupt record and where it lives; SQLite's own check too.

Also: an engine stops writing to a SQLite file the moment SQLite calls it malformed.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.persistence.conftest import private_database

import ledgerflow as lf
from ledgerflow import states
from ledgerflow.persistence.files import documents
from ledgerflow.persistence.sql.tables import FLOWS, TASKS
from ledgerflow.testing.conformance import make_book


def test_a_healthy_store_has_nothing_to_report(backend: lf.Backend) -> None:
    with backend.connect() as conn:
        for index in range(3):
            conn.save_logbook(make_book(f"b{index}", flows=2, tasks=2))
        assert list(conn.check()) == []


@pytest.fixture
def sql_store(sql_kind: str, tmp_path: Path) -> Iterator[lf.Backend]:
    with private_database(sql_kind, tmp_path) as uri, lf.open_backend(uri) as backend:
        with backend.connect() as conn:
            conn.upgrade()
        yield backend


def test_sql_check_names_each_bad_row_by_table_and_id(sql_store: lf.Backend) -> None:
    with sql_store.connect() as conn:
        book = conn.save_logbook(make_book(flows=2, tasks=2))
        other = conn.save_logbook(make_book("other"))
        bad_task, bad_flow = book.flows[0].tasks[1], book.flows[1]
        odd_task = other.flows[0].tasks[0]
        engine = sql_store.engine  # type: ignore[attr-defined]
        with engine.begin() as raw:
            raw.execute(TASKS.update().where(TASKS.c.uuid == bad_task.uuid).values(result="{x"))
            raw.execute(FLOWS.update().where(FLOWS.c.uuid == bad_flow.uuid).values(state="BOGUS"))
            raw.execute(TASKS.update().where(TASKS.c.uuid == odd_task.uuid).values(format="xml"))
        found = {damage.uuid: damage for damage in conn.check()}
    assert set(found) == {bad_task.uuid, bad_flow.uuid, odd_task.uuid}
    assert found[bad_flow.uuid].kind == "flow" and "'BOGUS'" in found[bad_flow.uuid].problem
    assert "state" in found[bad_flow.uuid].problem
    assert found[bad_task.uuid].where.startswith("table ledgerflow_task_details, row id ")
    assert "result" in found[bad_task.uuid].problem
    assert "format 'xml'" in found[odd_task.uuid].problem


def test_sqlite_check_reports_an_unreadable_time(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    with lf.open_backend(f"sqlite:///{path}") as backend, backend.connect() as conn:
        conn.upgrade()
        book = conn.save_logbook(make_book(tasks=1))
        task = book.flows[0].tasks[0]
        with sqlite3.connect(path) as raw:
            raw.execute(f"UPDATE {TASKS.name} SET started_at = 'soon' WHERE uuid = ?", (task.uuid,))
        [damage] = list(conn.check())
    assert damage.uuid == task.uuid and "started_at" in damage.problem


def test_file_check_names_a_truncated_file_and_its_uuid(tmp_path: Path) -> None:
    root = tmp_path / "store"
    with lf.open_backend(f"file://{root}") as backend, backend.connect() as conn:
        conn.upgrade()
        book = conn.save_logbook(make_book(flows=1, tasks=3))
        victim = book.flows[0].tasks[1]
        path = root / documents.record_path("task", victim.uuid)
        path.write_bytes(path.read_bytes()[:20])
        [damage] = list(conn.check())
    assert damage.kind == "task" and damage.uuid == victim.uuid
    assert damage.where == f"file {path}"


def _zero_a_page_of(path: Path, table: str) -> None:
    """Overwrite one leaf page of ``table`` in the middle of the file with zeros."""
    with sqlite3.connect(path) as raw:
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = [
            row[0]
            for row in raw.execute(
                "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY pageno",
                (table,),
            )
        ]
        size = raw.execute("PRAGMA page_size").fetchone()[0]
    page = pages[len(pages) // 2]
    with path.open("r+b") as handle:
        handle.seek((page - 1) * size)
        handle.write(b"\0" * size)


def _corrupt_store(tmp_path: Path) -> tuple[str, Path, list[lf.LogBook]]:
    path = tmp_path / "runs.db"
    uri = f"sqlite:///{path}"
    with lf.open_backend(uri) as backend, backend.connect() as conn:
        conn.upgrade()
        books = [conn.save_logbook(make_book(f"b{i}", tasks=5)) for i in range(120)]
    _zero_a_page_of(path, TASKS.name)
    return uri, path, books


def test_sqlite_integrity_check_is_part_of_check(tmp_path: Path) -> None:
    uri, path, _ = _corrupt_store(tmp_path)
    with lf.open_backend(uri) as backend, backend.connect() as conn:
        damages = list(conn.check())
    assert damages, "a zeroed page went unnoticed"
    assert any(d.kind is None and d.where == f"file {path}" for d in damages)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_malformed_file_stops_every_write_at_once(tmp_path: Path) -> None:
    uri, path, books = _corrupt_store(tmp_path)
    with lf.open_backend(uri) as backend, backend.connect() as conn:
        malformed = None
        for book in books:  # read until SQLite trips over the zeroed page
            try:
                conn.get_logbook(book.uuid)
            except lf.CorruptStoreError as exc:
                malformed = exc
                break
        assert malformed is not None
        assert str(path) in str(malformed) and "ledgerflow check" in str(malformed)
        before = _sha(path)
        healthy = books[0].flows[0].tasks[0]
        healthy.state = states.REVERTING
        for write in (
            lambda: conn.update_task_details(healthy),
            lambda: conn.update_details(healthy),
            lambda: conn.save_logbook(make_book("new")),
            conn.upgrade,
        ):
            with pytest.raises(lf.CorruptStoreError, match="ledgerflow check"):
                write()
    assert _sha(path) == before
