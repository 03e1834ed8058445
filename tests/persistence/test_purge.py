"""``lf.purge``: books whose flows all ended long enough ago go, nothing else does."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

import ledgerflow as lf
from ledgerflow import states
from ledgerflow.models import utcnow
from ledgerflow.persistence import care
from ledgerflow.persistence.ownership import OwnChange

OLD = timedelta(days=40)


def _book(conn: lf.Connection, name: str, *flows: tuple[str, timedelta]) -> lf.LogBook:
    book = lf.LogBook(name)
    for state, age in flows:
        flow = lf.FlowDetail(f"{name}-flow", state=state)
        flow.updated_at = utcnow() - age
        flow.add(lf.TaskDetail("t", state=states.SUCCESS))
        book.add(flow)
    return conn.save_logbook(book)


def _store(conn: lf.Connection) -> dict[str, lf.LogBook]:
    return {
        "old-success": _book(conn, "old-success", (states.SUCCESS, OLD)),
        "old-reverted": _book(conn, "old-reverted", (states.REVERTED, OLD), (states.SUCCESS, OLD)),
        "old-failure": _book(conn, "old-failure", (states.FAILURE, OLD)),
        "old-running": _book(conn, "old-running", (states.RUNNING, OLD)),
        "old-suspended": _book(conn, "old-suspended", (states.SUSPENDED, OLD)),
        "half-done": _book(conn, "half-done", (states.SUCCESS, OLD), (states.PENDING, OLD)),
        "recent": _book(conn, "recent", (states.SUCCESS, timedelta(days=1))),
        "no-flows": _book(conn, "no-flows"),
    }


def _names(conn: lf.Connection) -> set[str]:
    return {book.name for book in conn.list_logbooks()}


@pytest.mark.parametrize("batch", [1000, 2])
def test_purge_removes_only_books_whose_flows_all_ended_long_ago(
    backend: lf.Backend, batch: int
) -> None:
    with backend.connect() as conn:
        books = _store(conn)
        everything = _names(conn)
        assert lf.purge(backend, older_than=timedelta(days=30), dry_run=True, batch=batch) == 2
        assert _names(conn) == everything  # a dry run removes nothing
        assert lf.purge(backend, older_than=timedelta(days=30), batch=batch) == 2
        assert _names(conn) == everything - {"old-success", "old-reverted"}
        with pytest.raises(lf.NotFound):
            conn.get_flow_details(books["old-success"].flows[0].uuid)
        with pytest.raises(lf.NotFound):
            conn.get_task_details(books["old-reverted"].flows[1].tasks[0].uuid)
        assert lf.purge(backend, older_than=timedelta(days=30), batch=batch) == 0
        assert lf.purge(backend, older_than=timedelta(days=30), states=["FAILURE"]) == 1
        assert "old-failure" not in _names(conn)
        assert conn.get_logbook(books["half-done"].uuid).name == "half-done"


def test_a_guard_keeps_books_and_progress_is_reported(backend: lf.Backend) -> None:
    with backend.connect() as conn:
        books = _store(conn)
    keep = books["old-success"].uuid

    def guard(_conn: lf.Connection, uuids: Sequence[str]) -> set[str]:
        return {uuid for uuid in uuids if uuid == keep}

    seen: list[tuple[int, int]] = []
    care.BOOK_GUARDS.append(guard)
    try:
        removed = lf.purge(
            backend,
            older_than=timedelta(days=30),
            batch=3,
            progress=lambda done, total: seen.append((done, total)),
        )
    finally:
        care.BOOK_GUARDS.remove(guard)
    assert removed == 1
    with backend.connect() as conn:
        assert conn.get_logbook(keep).name == "old-success"
    assert seen[-1] == (8, 8) and [done for done, _ in seen] == sorted(done for done, _ in seen)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"older_than": 30}, "older_than must be a non-negative timedelta"),
        ({"older_than": timedelta(days=-1)}, "non-negative"),
        ({"older_than": OLD, "states": ["RUNNING"]}, "'RUNNING' is not an end state"),
        ({"older_than": OLD, "states": []}, "at least one"),
        ({"older_than": OLD, "batch": 0}, "batch must be a positive integer"),
    ],
)
def test_bad_arguments_are_value_errors(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        lf.purge("memory://", **kwargs)  # type: ignore[arg-type]


def test_purge_takes_a_uri(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'runs.db'}"
    with lf.open_backend(uri) as backend, backend.connect() as conn:
        conn.upgrade()
        _store(conn)
    assert lf.purge(uri, older_than=timedelta(days=30)) == 2


def test_sql_purges_with_one_delete_per_batch(sql_store: lf.Backend) -> None:
    with sql_store.connect() as conn:
        for index in range(5):
            _book(conn, f"done-{index}", (states.SUCCESS, OLD))
        _book(conn, "running", (states.RUNNING, OLD))
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    engine = sql_store.engine  # type: ignore[attr-defined]
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        assert lf.purge(sql_store, older_than=timedelta(days=30), batch=2) == 5
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    deletes = [s for s in statements if s.lstrip().upper().startswith("DELETE")]
    assert len(deletes) == 3  # 6 books in windows of 2
    with sql_store.connect() as conn:
        assert _names(conn) == {"running"}


def test_a_flow_an_engine_still_owns_keeps_its_book(backend: lf.Backend) -> None:
    with backend.connect() as conn:
        book = _book(conn, "owned", (states.SUCCESS, OLD))
        flow = book.flows[0]
        take = OwnChange("take", fence=flow.fence, owner="elsewhere:1:1", lease=600.0)
        assert conn.change_ownership(flow.uuid, take)
        assert lf.purge(backend, older_than=timedelta(days=30), dry_run=True) == 0
        assert lf.purge(backend, older_than=timedelta(days=30)) == 0
        assert conn.get_logbook(book.uuid).name == "owned"
        assert conn.change_ownership(flow.uuid, OwnChange("release", fence=flow.fence + 1))
        assert lf.purge(backend, older_than=timedelta(days=30)) == 1
