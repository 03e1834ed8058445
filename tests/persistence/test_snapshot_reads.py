"""A book read in several queries comes back as of one moment, even while others write."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

import ledgerflow as lf
from ledgerflow.persistence.primitives import RecordConnection
from ledgerflow.testing.conformance import make_book


def _write_between_queries(
    conn: RecordConnection, monkeypatch: pytest.MonkeyPatch, write: Callable[[], None]
) -> threading.Thread:
    """After the read's first query, run ``write`` in another thread (give it 1 s)."""
    writer = threading.Thread(target=write, daemon=True)
    fetch = conn._fetch

    def fetch_then_write(*args: Any, **kwargs: Any) -> Any:
        rows = fetch(*args, **kwargs)
        if not writer.is_alive() and writer.ident is None:
            writer.start()
            writer.join(1.0)  # MVCC stores let it commit now; locking stores make it wait
        return rows

    monkeypatch.setattr(conn, "_fetch", fetch_then_write)
    return writer


def _destroy(backend: lf.Backend, uuid: str) -> Callable[[], None]:
    def destroy() -> None:
        with backend.connect() as other:
            other.destroy_logbook(uuid)

    return destroy


def test_get_logbook_is_whole_while_another_connection_deletes_it(
    backend: lf.Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    with backend.connect() as conn:
        assert isinstance(conn, RecordConnection)
        book = conn.save_logbook(make_book(flows=2, tasks=3))
        expected = conn.get_logbook(book.uuid).to_dict()
        writer = _write_between_queries(conn, monkeypatch, _destroy(backend, book.uuid))
        assert conn.get_logbook(book.uuid).to_dict() == expected  # not a book without flows
        monkeypatch.undo()
        writer.join(10)
        assert not writer.is_alive()
        with pytest.raises(lf.NotFound):
            conn.get_logbook(book.uuid)


def test_get_flow_details_sees_no_task_newer_than_its_flow(
    backend: lf.Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    with backend.connect() as conn:
        assert isinstance(conn, RecordConnection)
        book = conn.save_logbook(make_book(flows=1, tasks=2))
        flow = book.flows[0]

        def advance() -> None:  # the engine's step: a task and its flow change together
            with backend.connect() as other:
                task = other.get_task_details(flow.tasks[0].uuid)
                moved = other.get_flow_details(flow.uuid, lazy=True)
                task.result, moved.meta = "moved", {"moved": True}
                other.update_details(task, moved)

        writer = _write_between_queries(conn, monkeypatch, advance)
        read = conn.get_flow_details(flow.uuid)
        monkeypatch.undo()
        writer.join(10)
        assert not writer.is_alive()
        # Both changes or neither: never the new task result under the old flow.
        assert (read.meta.get("moved"), read.tasks[0].result) == (None, flow.tasks[0].result)
        fresh = conn.get_flow_details(flow.uuid)
        assert (fresh.meta.get("moved"), fresh.tasks[0].result) == (True, "moved")
