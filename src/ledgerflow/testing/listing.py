"""More of the backend contract: keyset paging of books, listing flows, time spans.

``BackendConformance`` inherits these checks; each takes the ``conn`` fixture (a
connection to an empty, upgraded store).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ledgerflow import states
from ledgerflow.models import FlowDetail, LogBook, TaskDetail
from ledgerflow.persistence.base import Connection

__all__ = ["ListingChecks"]

BASE = datetime(2026, 5, 1, tzinfo=UTC)


def _book(name: str, at: datetime, uuid: str = "", state: str = states.SUCCESS) -> LogBook:
    book = LogBook(name, uuid=uuid)
    book.created_at = book.updated_at = at
    flow = FlowDetail(f"flow-{name}", state=state)
    flow.created_at = flow.updated_at = at
    task = TaskDetail("t", state=states.SUCCESS)
    task.started_at = at + timedelta(seconds=1)
    task.finished_at = at + timedelta(seconds=3)
    flow.add(task)
    flow.add(TaskDetail("never"))
    book.add(flow)
    return book


class ListingChecks:
    """Keyset paging (``after=``), uuid prefixes, ``list_flows`` and ``task_time_spans``."""

    def _books(self, conn: Connection) -> list[LogBook]:
        # Pairs share a creation time, so the uuid breaks ties on every page boundary.
        made = [
            conn.save_logbook(_book(f"b{i % 3}", BASE + timedelta(seconds=i // 2), f"k{i:02d}"))
            for i in range(9)
        ]
        return sorted(made, key=lambda b: (b.created_at, b.uuid))

    def test_keyset_pages_walk_every_book_once_in_both_orders(self, conn: Connection) -> None:
        ordered = self._books(conn)
        for newest_first, expected in ((True, ordered[::-1]), (False, ordered)):
            seen: list[str] = []
            after = None
            while True:
                page = conn.list_logbooks(limit=2, newest_first=newest_first, after=after)
                if not page:
                    break
                seen.extend(book.uuid for book in page)
                after = (page[-1].created_at, page[-1].uuid)
            assert seen == [book.uuid for book in expected]

    def test_keyset_combines_with_filters_and_offset(self, conn: Connection) -> None:
        ordered = self._books(conn)
        named = [b for b in ordered[::-1] if b.name == "b1"]
        first = conn.list_logbooks(limit=1, newest_first=True, name="b1")
        cursor = (first[0].created_at, first[0].uuid)
        rest = conn.list_logbooks(newest_first=True, name="b1", after=cursor)
        assert [b.uuid for b in first + rest] == [b.uuid for b in named]
        skipped = conn.list_logbooks(newest_first=True, after=cursor, offset=1, limit=1)
        newest = ordered[::-1]
        start = [b.uuid for b in newest].index(cursor[1])
        assert [b.uuid for b in skipped] == [newest[start + 2].uuid]

    def test_uuid_prefix_is_exact_and_case_sensitive(self, conn: Connection) -> None:
        self._books(conn)
        conn.save_logbook(_book("upper", BASE, "K99"))
        assert {b.uuid for b in conn.list_logbooks(prefix="k0")} == {f"k0{i}" for i in range(9)}
        assert [b.uuid for b in conn.list_logbooks(prefix="K")] == ["K99"]
        assert conn.count_logbooks(prefix="k0") == 9
        assert conn.count_logbooks(prefix="k0%") == 0
        assert conn.list_logbooks(prefix="_") == []

    def test_a_malformed_cursor_is_a_value_error(self, conn: Connection) -> None:
        for bad in (("x", "y"), (BASE.replace(tzinfo=None), "u"), (BASE,)):
            with pytest.raises(ValueError, match="after"):
                conn.list_logbooks(after=bad)  # type: ignore[arg-type]

    def test_list_flows_newest_first_with_filters(self, conn: Connection) -> None:
        books = [
            conn.save_logbook(
                _book(
                    f"f{i}",
                    BASE + timedelta(minutes=i),
                    state=states.FAILURE if i == 1 else "SUCCESS",
                )
            )
            for i in range(4)
        ]
        flows = conn.list_flows()
        assert [flow.uuid for _, flow in flows] == [b.flows[0].uuid for b in books[::-1]]
        assert [book_uuid for book_uuid, _ in flows] == [b.uuid for b in books[::-1]]
        assert all(len(flow) == 0 for _, flow in flows)
        assert [f.name for _, f in conn.list_flows(state=states.FAILURE)] == ["flow-f1"]
        assert [f.name for _, f in conn.list_flows(name="flow-f2")] == ["flow-f2"]
        since = conn.list_flows(since=BASE + timedelta(minutes=2))
        assert [f.name for _, f in since] == ["flow-f3", "flow-f2"]
        assert conn.count_flows() == 4
        assert conn.count_flows(state=states.FAILURE) == 1
        assert conn.count_flows(since=BASE + timedelta(minutes=2)) == 2
        page = conn.list_flows(limit=2)
        last = page[-1][1]
        rest = conn.list_flows(after=(last.created_at, last.uuid))
        assert [f.name for _, f in page + rest] == ["flow-f3", "flow-f2", "flow-f1", "flow-f0"]
        assert conn.list_flows(prefix=books[0].flows[0].uuid[:12])[0][1].name == "flow-f0"

    def test_task_time_spans(self, conn: Connection) -> None:
        book = conn.save_logbook(_book("spans", BASE))
        flow = book.flows[0]
        idle = conn.save_logbook(LogBook("idle"))
        spare = FlowDetail("idle-flow")
        spare.add(TaskDetail("t"))
        idle.add(spare)
        conn.save_logbook(idle)
        spans = conn.task_time_spans([flow.uuid, spare.uuid])
        assert spans[flow.uuid] == (BASE + timedelta(seconds=1), BASE + timedelta(seconds=3))
        assert spans.get(spare.uuid, (None, None)) == (None, None)

    def test_flow_state_counts(self, conn: Connection) -> None:
        book = _book("counts", BASE)
        extra = FlowDetail("second", state=states.FAILURE)
        book.add(extra)
        conn.save_logbook(book)
        empty = conn.save_logbook(LogBook("empty"))
        counts = conn.flow_state_counts([book.uuid, empty.uuid])
        assert counts == {book.uuid: {states.SUCCESS: 1, states.FAILURE: 1}, empty.uuid: {}}

    def test_snapshot_nests_and_reads(self, conn: Connection) -> None:
        book = conn.save_logbook(_book("snap", BASE))
        with conn.snapshot(), conn.snapshot():
            assert conn.get_logbook(book.uuid).uuid == book.uuid
            assert conn.locate(book.flows[0].uuid).kind == "flow"
