"""More of the backend contract: copies (between backends, caller vs store) and encoding.

``BackendConformance`` inherits these checks; each takes the ``conn`` fixture (a
connection to an empty, upgraded store) and checks one sentence of API.md.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from ledgerflow import states
from ledgerflow.errors import NotFound, SerializationError
from ledgerflow.models import Failure, LogBook, TaskDetail
from ledgerflow.persistence.base import Connection
from ledgerflow.persistence.memory import MemoryBackend
from ledgerflow.testing.books import make_book

__all__ = ["CopyChecks", "EncodingChecks"]


def _without_revisions(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _without_revisions(v) for k, v in data.items() if k != "revision"}
    if isinstance(data, list):
        return [_without_revisions(v) for v in data]
    return data


def _rich_book() -> LogBook:
    book = make_book(flows=2, tasks=2)
    task = book.flows[1].tasks[0]
    task.state = states.REVERT_FAILURE
    task.failure = Failure(("pkg.Boom", "builtins.Exception"), "boom", "tb", None)
    task.revert_failure = Failure(("pkg.Undo", "builtins.Exception"), "undo", "", task.failure)
    task.checkpoint = [1, {"offset": 7}]
    return book


class CopyChecks:
    """Promises about copies: across backends, and between caller and store."""

    def test_a_book_read_from_another_backend_saves_with_every_field_but_revision(
        self, conn: Connection
    ) -> None:
        book = _rich_book()
        with MemoryBackend("memory://") as other, other.connect() as source:
            source.save_logbook(book)
            source.save_logbook(book)  # revision 2 in the source
            loaded = source.get_logbook(book.uuid)
        assert conn.save_logbook(loaded) is loaded
        copied = conn.get_logbook(book.uuid)
        assert _without_revisions(copied.to_dict()) == _without_revisions(book.to_dict())
        assert copied.to_dict() == loaded.to_dict()

    def test_update_details_keep_no_reference_to_the_callers_objects(
        self, conn: Connection
    ) -> None:
        book = conn.save_logbook(_rich_book())
        flow = book.flows[0]
        task = flow.tasks[0]
        task.meta["written"] = True
        conn.update_task_details(task)
        task.meta["after-update"] = True
        task.result["value"] = "mutated"
        added = TaskDetail("added", meta={"n": 1})
        flow.add(added)
        conn.update_flow_details(flow)
        flow.meta["after-update"] = True
        added.meta["n"] = 2
        stored_task = conn.get_task_details(task.uuid)
        assert stored_task.meta == {"t": 0, "written": True}
        assert stored_task.result["value"] == 0
        assert "after-update" not in conn.get_flow_details(flow.uuid).meta
        assert conn.get_task_details(added.uuid).meta == {"n": 1}

    def test_listing_calls_return_independent_copies(self, conn: Connection) -> None:
        book = conn.save_logbook(_rich_book())
        flows = conn.get_flows_for_book(book.uuid)
        assert [len(f) for f in flows] == [2, 2]  # each with its task details
        flows[0].meta["x"] = 1
        flows[0].tasks[0].meta["x"] = 1
        conn.get_tasks_for_flow(flows[1].uuid)[0].meta["x"] = 1
        conn.get_logbooks()[0].meta["x"] = 1
        assert conn.get_logbook(book.uuid).to_dict() == book.to_dict()
        assert conn.get_logbooks(name=book.name, limit=1, offset=0)[0] is not book


class EncodingChecks:
    """Values JSON can encode but UTF-8 cannot store are refused before any write."""

    def test_a_lone_surrogate_is_a_serialization_error_and_writes_nothing(
        self, conn: Connection
    ) -> None:
        book = _rich_book()
        book.flows[0].tasks[1].result = {"text": "broken \ud800 half"}
        with pytest.raises(SerializationError) as info:
            conn.save_logbook(book)
        assert isinstance(info.value, ValueError)
        with pytest.raises(NotFound):
            conn.get_logbook(book.uuid)

    def test_times_come_back_as_the_same_instant_in_utc(self, conn: Connection) -> None:
        plus_two = timezone(timedelta(hours=2))
        book = LogBook("offset")
        book.created_at = datetime(2026, 1, 1, 12, 0, 0, 5, tzinfo=plus_two)
        naive = LogBook("naive")  # a naive time is taken as UTC
        naive.created_at = datetime(2026, 1, 1, 10, 0, 0, 6)
        conn.save_logbook(book)
        conn.save_logbook(naive)
        loaded = conn.get_logbook(book.uuid)
        assert loaded.created_at == book.created_at
        assert loaded.created_at.utcoffset() == timedelta(0)
        assert conn.get_logbook(naive.uuid).created_at == naive.created_at.replace(tzinfo=UTC)
        assert [b.name for b in conn.get_logbooks()] == ["offset", "naive"]

    def test_the_name_filter_is_an_exact_match(self, conn: Connection) -> None:
        for name in ("a", "a ", "A", "ä"):
            conn.save_logbook(LogBook(name))
        for name in ("a", "a ", "A", "ä"):
            assert [b.name for b in conn.get_logbooks(name=name)] == [name]
            assert [b.name for b in conn.get_logbooks(name=name, lazy=True, limit=5)] == [name]
        assert conn.get_logbooks(name="a  ") == []
