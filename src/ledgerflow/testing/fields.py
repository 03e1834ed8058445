"""The contract on field values: every backend refuses the same bad values, writing nothing.

``BackendConformance`` inherits these checks (API.md, Persistence: "``save_logbook``
and ``update_*`` check every field first").  Each bad value must raise ``ValueError``
naming the record, the field and the value, on a new record and on a stored one,
and leave the store exactly as it was; every good border value must read back.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ledgerflow.errors import ConflictError
from ledgerflow.models import FlowDetail, LogBook, TaskDetail
from ledgerflow.persistence.base import Connection
from ledgerflow.testing.books import make_book

__all__ = ["FieldChecks"]

#: (kind, field, bad value): None where a value is required, wrong types, out of range.
BAD_VALUES: list[tuple[str, str, Any]] = [
    ("book", "name", None),
    ("book", "updated_at", None),
    ("book", "created_at", "2026-01-01T00:00:00"),
    ("book", "meta", None),
    ("book", "meta", ["not", "a", "dict"]),
    ("book", "revision", -1),
    ("flow", "state", None),
    ("flow", "state", "BOGUS"),
    ("flow", "name", 42),
    ("flow", "type", b"bytes"),
    ("flow", "updated_at", None),
    ("flow", "meta", "text"),
    ("task", "state", None),
    ("task", "state", ["SUCCESS"]),
    ("task", "version", None),
    ("task", "attempts", "1"),
    ("task", "attempts", True),
    ("task", "attempts", -1),
    ("task", "attempts", 2**31),
    ("task", "started_at", "yesterday"),
    ("task", "finished_at", 1234567890),
    ("task", "failure", "boom"),
    ("task", "revert_failure", {"message": "x"}),
    ("task", "meta", None),
    ("task", "created_at", None),
]


def _book() -> LogBook:
    return make_book(flows=1, tasks=2)


def _target(book: LogBook, kind: str) -> LogBook | FlowDetail | TaskDetail:
    if kind == "book":
        return book
    flow = book.flows[0]
    return flow if kind == "flow" else flow.tasks[1]


def _id(value: tuple[str, str, Any]) -> str:
    kind, field, bad = value
    return f"{kind}.{field}={type(bad).__name__}"


class FieldChecks:
    """Bad field values are refused alike by every backend, before anything is written."""

    @pytest.mark.parametrize("case", BAD_VALUES, ids=_id)
    def test_a_bad_field_in_a_new_book_is_refused_and_nothing_is_written(
        self, conn: Connection, case: tuple[str, str, Any]
    ) -> None:
        kind, field, bad = case
        book = _book()
        record = _target(book, kind)
        setattr(record, field, bad)
        records = [book, *book.flows, *book.flows[0]]
        revisions = [r.revision for r in records]
        with pytest.raises(ValueError) as caught:
            conn.save_logbook(book)
        assert not isinstance(caught.value, ConflictError)
        message = str(caught.value)
        assert field in message and record.uuid in message, message
        assert type(bad).__name__ in message, message
        assert conn.count_logbooks() == 0
        assert [r.revision for r in records] == revisions

    @pytest.mark.parametrize("case", BAD_VALUES, ids=_id)
    def test_a_bad_field_in_a_stored_record_is_refused_by_every_write(
        self, conn: Connection, case: tuple[str, str, Any]
    ) -> None:
        kind, field, bad = case
        book = conn.save_logbook(_book())
        before = conn.get_logbook(book.uuid).to_dict()
        record = _target(book, kind)
        setattr(record, field, bad)
        writes: list[Any] = [lambda: conn.save_logbook(book)]
        if isinstance(record, FlowDetail):
            writes += [
                lambda: conn.update_flow_details(record),
                lambda: conn.update_details(record),
            ]
        elif isinstance(record, TaskDetail):
            writes += [
                lambda: conn.update_task_details(record),
                lambda: conn.update_details(record),
            ]
            book.flows[0].state = "RUNNING"  # a good change in the same call: not written either
            writes.append(lambda: conn.update_details(book.flows[0], record))
        for write in writes:
            with pytest.raises(ValueError, match=field):
                write()
        assert conn.get_logbook(book.uuid).to_dict() == before

    def test_border_values_every_store_keeps_read_back(self, conn: Connection) -> None:
        book = _book()
        task = book.flows[0].tasks[0]
        task.attempts = 2**31 - 1
        task.started_at = task.finished_at = None
        task.type = None
        book.flows[0].type = None
        naive = datetime(2026, 3, 4, 5, 6, 7, 890123)
        book.created_at = naive
        conn.save_logbook(book)
        loaded = conn.get_logbook(book.uuid)
        assert loaded.flows[0].tasks[0].attempts == 2**31 - 1
        assert loaded.flows[0].type is None and loaded.flows[0].tasks[0].started_at is None
        assert loaded.created_at == naive.replace(tzinfo=UTC)  # a naive time is UTC
