"""The read model (``ledgerflow.history``): cursors, lease status, timelines, tries, views."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import ledgerflow as lf
from ledgerflow import states
from ledgerflow.engine import identity
from ledgerflow.history import (
    BookSummary,
    Corrupt,
    History,
    TaskView,
    decode_cursor,
    encode_cursor,
    lease_of,
    task_tries,
    timeline,
)
from ledgerflow.persistence.files import documents
from tests.corrupting import garble

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def test_cursors_round_trip_any_uuid_and_refuse_garbage() -> None:
    for uuid in ("plain", "with/slash & ?=#", "ünïcødé", "x" * 255):
        assert decode_cursor(encode_cursor(NOW, uuid)) == (NOW, uuid)
    for bad in ("", "!!!", "bm90IGpzb24", encode_cursor(NOW, "u")[:-3] + "$$$"):
        with pytest.raises(ValueError, match="cursor"):
            decode_cursor(bad)


def _flow(**ownership: object) -> lf.FlowDetail:
    flow = lf.FlowDetail("f", state=states.RUNNING)
    for key, value in ownership.items():
        object.__setattr__(flow, key, value)
    return flow


def test_lease_status_is_read_tolerantly() -> None:
    assert lease_of(lf.FlowDetail("f"), NOW).status == "free"
    held = lease_of(_flow(owner="elsewhere:1:2", fence=3, lease_expires_at=NOW + timedelta(1)), NOW)
    assert (held.status, held.fence) == ("held", 3)
    assert "held by elsewhere:1:2 until" in held.describe()
    expired = lease_of(_flow(owner="elsewhere:1:2", lease_expires_at=NOW - timedelta(1)), NOW)
    assert expired.status == "expired"


def test_an_owner_process_gone_on_this_host_is_marked_so() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    owner = identity.owner_of(child.pid)
    child.wait()
    assert owner is not None
    assert lease_of(_flow(owner=owner, lease_expires_at=NOW + timedelta(1)), NOW).status == "gone"
    alive = identity.owner_of(os.getppid())  # the process that started this one
    assert alive is not None
    assert lease_of(_flow(owner=alive, lease_expires_at=NOW + timedelta(1)), NOW).status == "held"
    elsewhere = f"{socket.gethostname()}:{os.getppid()}:0"  # another host (or container)
    assert lease_of(_flow(owner=elsewhere, lease_expires_at=NOW + timedelta(1)), NOW).status == (
        "held"
    )


def _task(name: str, start: float | None, end: float | None, state: str) -> lf.TaskDetail:
    task = lf.TaskDetail(name, state=state)
    task.started_at = None if start is None else NOW + timedelta(seconds=start)
    task.finished_at = None if end is None else NOW + timedelta(seconds=end)
    return task


def test_timeline_keeps_the_longest_rows_in_start_order() -> None:
    tasks = [
        _task("a", 0, 1, states.SUCCESS),
        _task("b", 1, 9, states.SUCCESS),
        _task("c", 2, 3, states.SUCCESS),
        _task("d", 3, None, states.RUNNING),
        _task("never", None, None, states.PENDING),
    ]
    drawn = timeline(tasks, NOW + timedelta(seconds=20))
    assert drawn is not None and drawn.total == 4 and drawn.span == 20
    assert [bar.task.name for bar in drawn.bars] == ["a", "b", "c", "d"]
    assert drawn.bars[3].open_ended and drawn.bars[3].length == 17
    top = timeline(tasks, NOW + timedelta(seconds=20), rows=2)
    assert top is not None and [bar.task.name for bar in top.bars] == ["b", "d"]
    assert timeline([tasks[-1]], NOW) is None


def test_tries_of_a_store_without_them_rebuild_the_last_one() -> None:
    failed = _task("x", 0, 1, states.REVERTED)
    failed.attempts = 3
    failed.failure = lf.Failure.from_exception(RuntimeError("third try"))
    (only,) = task_tries(failed)
    assert (only["attempt"], only["state"]) == (3, states.FAILURE)
    assert task_tries(lf.TaskDetail("never")) == []


def test_views_read_a_record_and_its_header() -> None:
    with lf.open_backend("memory://") as backend, backend.connect() as conn:
        conn.upgrade()
        book = lf.LogBook("b")
        flow = lf.FlowDetail("f", state=states.REVERTED)
        bad = _task("bad", 0, 1, states.REVERTED)
        bad.failure = lf.Failure.from_exception(ValueError("boom"))
        flow.add(bad)
        flow.add(_task("fine", 0, 1, states.SUCCESS))
        book.add(flow)
        conn.save_logbook(book)
        history = History(conn)
        view = history.flow(flow.uuid)
        assert view.book.uuid == book.uuid and len(view.flow) == 2
        assert view.task_states == {states.REVERTED: 1, states.SUCCESS: 1}
        assert [task.name for task, _ in view.failures()] == ["bad"]
        task_view = history.task(bad.uuid)
        assert (task_view.flow.uuid, task_view.book.uuid) == (flow.uuid, book.uuid)
        assert history.record(book.uuid).to_dict() == conn.get_logbook(book.uuid).to_dict()
        with pytest.raises(lf.NotFound, match="is a logbook"):
            history.flow(book.uuid)
        with pytest.raises(ValueError, match="limit"):
            history.books(limit=0)
        with pytest.raises(ValueError, match="state"):
            history.flows(state="nope")
        page = history.books(limit=1)
        assert page.total == 1 and page.next is None
        assert page.items[0].flow_states == {states.REVERTED: 1}


def test_a_task_and_its_header_are_one_read_transaction_on_sqlite(tmp_path: Path) -> None:
    import sqlalchemy as sa

    uri = f"sqlite:///{tmp_path / 'runs.db'}"
    flow = lf.FlowDetail("f")
    flow.add(lf.TaskDetail("t"))
    book = lf.LogBook("b")
    book.add(flow)
    with lf.open_backend(uri) as backend, backend.connect() as conn:
        conn.upgrade()
        conn.save_logbook(book)
        History(conn).record(flow.tasks[0].uuid)  # the schema check happens once per backend
        statements: list[str] = []

        def record(*args: Any) -> None:
            statements.append(args[2])

        sa.event.listen(backend.engine, "before_cursor_execute", record)  # type: ignore[attr-defined]
        view = History(conn).record(flow.tasks[0].uuid)
    assert isinstance(view, TaskView) and view.book.uuid == book.uuid
    assert [s for s in statements if s.startswith("BEGIN")] == ["BEGIN"]
    assert len(statements) == 8  # BEGIN, 4 to locate the uuid, task, flow, book


# ---- reading around corrupt records ----------------------------------------------------
def _three_books(conn: lf.Connection) -> list[lf.LogBook]:
    """Three books of one flow with two tasks each, oldest first."""
    books = []
    for name in ("old", "middle", "new"):
        book = lf.LogBook(name)
        flow = lf.FlowDetail(f"{name}-flow", state=states.SUCCESS)
        for task in ("a", "b"):
            flow.add(lf.TaskDetail(task, state=states.SUCCESS))
        book.add(flow)
        books.append(conn.save_logbook(book))
    return books


@pytest.fixture
def file_conn(tmp_path: Path) -> Iterator[lf.Connection]:
    """A connection to an empty file store at ``tmp_path``."""
    with lf.open_backend(f"file://{tmp_path}") as backend, backend.connect() as conn:
        conn.upgrade()
        yield conn


def test_books_around_corruption_pages_past_a_record_file_that_is_not_json(
    tmp_path: Path, file_conn: lf.Connection
) -> None:
    old, middle, new = _three_books(file_conn)
    path = tmp_path / documents.record_path("book", middle.uuid)
    document = json.loads(path.read_text())
    document["row"]["meta"] = 7  # a wrong type
    path.write_text(json.dumps(document))
    history = History(file_conn)
    seen: list[BookSummary | Corrupt] = []
    after = None
    for _ in range(4):
        page = history.books_around_corruption(limit=1, after=after)
        assert page.total == 3
        seen.extend(page.items)
        after = page.next
        if after is None:
            break
    assert [item.book.uuid for item in seen if isinstance(item, BookSummary)] == [
        new.uuid,
        old.uuid,
    ]
    assert isinstance(seen[1], Corrupt) and str(path) in seen[1].message
    assert middle.uuid in seen[1].message  # its uuid read, so it kept its place
    page = history.books_around_corruption(state=states.SUCCESS)
    assert [isinstance(item, Corrupt) for item in page.items] == [False, True, False]
    assert json.loads(path.read_text()) == document  # left as it was found


def test_views_list_around_a_time_column_holding_no_time(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'runs.db'}"
    with lf.open_backend(uri) as backend, backend.connect() as conn:
        conn.upgrade()
        _, middle, _ = _three_books(conn)
    flow = middle.flows[0]
    garble(uri, "ledgerflow_task_details", "created_at", flow.tasks[1].uuid, "not a date")
    with lf.open_backend(uri) as backend, backend.connect() as conn:
        view = History(conn).flow(flow.uuid, tolerant=True)
        assert [task.name for task in view.flow] == ["a"]
        [entry] = view.corrupt
        assert (entry.uuid, entry.position) == (flow.tasks[1].uuid, 1)
        assert "created_at" in entry.message
        book = History(conn).book(middle.uuid, tolerant=True)
        assert [entry.uuid for entry in book.corrupt] == [flow.tasks[1].uuid]
        with pytest.raises(lf.CorruptRecordError, match=flow.tasks[1].uuid):
            History(conn).task(flow.tasks[1].uuid)


def test_views_read_tolerantly_stand_a_corrupt_record_above_them_as_corrupt(
    tmp_path: Path,
) -> None:
    uri = f"sqlite:///{tmp_path / 'runs.db'}"
    with lf.open_backend(uri) as backend, backend.connect() as conn:
        conn.upgrade()
        _, middle, _ = _three_books(conn)
    flow = middle.flows[0]
    garble(uri, "ledgerflow_logbooks", "meta", middle.uuid)
    with lf.open_backend(uri) as backend, backend.connect() as conn:
        history = History(conn)
        view = history.flow(flow.uuid, tolerant=True)
        assert isinstance(view.book, Corrupt) and view.book.uuid == middle.uuid
        assert [task.name for task in view.flow] == ["a", "b"]
        assert view.corrupt_records() == (view.book,)
        task = history.task(flow.tasks[0].uuid, tolerant=True)
        assert isinstance(task.book, Corrupt) and task.flow.uuid == flow.uuid
        with pytest.raises(lf.CorruptRecordError, match=middle.uuid):
            history.flow(flow.uuid)  # not tolerant: the view fails, as before
        with pytest.raises(lf.CorruptRecordError, match=middle.uuid):
            history.task(flow.tasks[0].uuid)


def test_a_book_whose_flow_file_is_corrupt_is_summarised_with_the_record_that_is(
    tmp_path: Path, file_conn: lf.Connection
) -> None:
    old, middle, new = _three_books(file_conn)
    path = tmp_path / documents.record_path("flow", middle.flows[0].uuid)
    path.write_text('{"kind": "flow", "row": {"uuid": 7}}')  # wrong types
    items = History(file_conn).books_around_corruption().items
    assert all(isinstance(item, BookSummary) for item in items)
    assert [item.book.uuid for item in items] == [new.uuid, middle.uuid, old.uuid]
    unread = [item.corrupt for item in items if isinstance(item, BookSummary)]
    assert unread[0] is None and unread[2] is None
    assert unread[1] is not None and str(path) in unread[1].message
    assert items[1].to_dict()["flow_states"] is None
