"""The read model behind ``ledgerflow books/flows/show`` and the web view.

Every view is read in one snapshot of the store (``Connection.snapshot``), so a
record and its header (book above a flow, flow above a task) always agree.  Lists
are paged by a keyset cursor over the ``(created_at, uuid)`` index: page 2,000 costs
what page 1 costs.  ``offset`` stays for small stores and for "page N" links.
Nothing here writes.

``History`` reads; what it hands out lives beside it and is importable from here
too: paging (``ledgerflow.paging``), leases (``ledgerflow.leases``), summaries and
views (``ledgerflow.snapshots``), timelines (``ledgerflow.timelines``) and reading
around corrupt records (``ledgerflow.corrupt``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from ledgerflow import states
from ledgerflow.corrupt import Corrupt, child_rows, per_item, robust_page
from ledgerflow.errors import CorruptRecordError, NotFound
from ledgerflow.leases import ORPHAN_SCAN, Lease, lease_of, orphaned_counts
from ledgerflow.models import LogBook
from ledgerflow.paging import (
    MAX_PAGE,
    PAGE_SIZE,
    Page,
    check_limit,
    check_offset,
    check_state,
    decode_cursor,
    encode_cursor,
    encode_position,
    next_cursor,
    read_position,
)
from ledgerflow.persistence import records
from ledgerflow.persistence.base import Connection, RecordRef
from ledgerflow.persistence.primitives import RecordConnection
from ledgerflow.persistence.records import Kind, check_uuid
from ledgerflow.persistence.uri import mask_password
from ledgerflow.snapshots import BookSummary, BookView, FlowSummary, FlowView, TaskView, View
from ledgerflow.timelines import Bar, Timeline, count_states, task_tries, timeline

__all__ = [
    "MAX_PAGE",
    "ORPHAN_SCAN",
    "PAGE_SIZE",
    "Bar",
    "BookSummary",
    "BookView",
    "Corrupt",
    "FlowSummary",
    "FlowView",
    "History",
    "Lease",
    "Page",
    "TaskView",
    "Timeline",
    "View",
    "check_uuid",
    "count_states",
    "decode_cursor",
    "encode_cursor",
    "encode_position",
    "lease_of",
    "mask_password",
    "per_item",
    "robust_page",
    "task_tries",
    "timeline",
]

T = TypeVar("T")


class History:
    """Read-only views of one store, each read in one snapshot."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # ---- listings -----------------------------------------------------------------
    def books(
        self,
        *,
        limit: int = PAGE_SIZE,
        after: str | None = None,
        offset: int = 0,
        state: str | None = None,
        name: str | None = None,
        prefix: str | None = None,
        newest_first: bool = True,
        count: bool = True,
    ) -> Page[BookSummary]:
        """Books newest first (or oldest), with their flow and task state counts.

        ``count=False`` leaves ``total`` out (None): a count reads the whole index, which
        a caller walking every page does not need.
        """
        cursor, skip = read_position(after)
        limit, offset = check_limit(limit), check_offset(offset)
        state = check_state(state, states.FLOW_STATES)
        conn = self.conn
        with conn.snapshot():
            found = conn.list_logbooks(
                limit=limit + 1,
                offset=skip + offset,
                name=name,
                state=state,
                newest_first=newest_first,
                after=cursor,
                prefix=prefix or None,
            )
            shown = found[:limit]
            uuids = [book.uuid for book in shown]
            flow_counts = conn.flow_state_counts(uuids) if uuids else {}
            task_counts = conn.task_state_counts(uuids) if uuids else {}
            total = (
                conn.count_logbooks(name=name, state=state, prefix=prefix or None)
                if count
                else None
            )
            running = {u for u in uuids if flow_counts.get(u, {}).get(states.RUNNING)}
            orphaned = orphaned_counts(conn, running) if running else {}
        items = [
            BookSummary(
                book,
                flow_counts.get(book.uuid, {}),
                task_counts.get(book.uuid, {}),
                orphaned.get(book.uuid, 0),
            )
            for book in shown
        ]
        return Page(items, total, next_cursor(found, limit), offset)

    def books_around_corruption(
        self,
        *,
        limit: int = PAGE_SIZE,
        after: str | None = None,
        offset: int = 0,
        state: str | None = None,
        name: str | None = None,
        prefix: str | None = None,
        newest_first: bool = True,
    ) -> Page[BookSummary | Corrupt]:
        """``books()``, with each book that does not load as a ``Corrupt`` in its place.

        Only a page holding a corrupt record costs more: it is read in halves until
        each corrupt one stands alone.  Its ``next`` is a position (rows past the
        page's cursor), so paging goes on past the corrupt record.
        """
        filters: dict[str, Any] = {"state": state, "name": name, "prefix": prefix}
        try:
            page = self.books(
                limit=limit, after=after, offset=offset, newest_first=newest_first, **filters
            )
        except CorruptRecordError:
            pass
        else:
            return Page(list[BookSummary | Corrupt](page.items), page.total, page.next, offset)
        cursor, skip = read_position(after)
        limit, offset = check_limit(limit), check_offset(offset)
        state = check_state(state, states.FLOW_STATES)
        conn = self.conn
        start = skip + offset

        def fetch(at: int, count: int | None) -> list[LogBook]:
            return conn.list_logbooks(
                limit=count,
                offset=start + at,
                name=name,
                state=state,
                newest_first=newest_first,
                after=cursor,
                prefix=prefix or None,
            )

        with conn.snapshot():
            found = robust_page(fetch, 0, limit + 1, 0)
            shown = found[:limit]
            uuids = [book.uuid for book in shown if isinstance(book, LogBook)]
            flow_counts = per_item(conn.flow_state_counts, uuids) if uuids else {}
            task_counts = per_item(conn.task_state_counts, uuids) if uuids else {}
            total = conn.count_logbooks(name=name, state=state, prefix=prefix or None)
            running = {u for u in uuids if _counts(flow_counts.get(u)).get(states.RUNNING)}
            try:
                orphaned = orphaned_counts(conn, running) if running else {}
            except CorruptRecordError:  # a hint only: left out when a flow row is corrupt
                orphaned = {}
        items: list[BookSummary | Corrupt] = [
            Corrupt(book)
            if isinstance(book, CorruptRecordError)
            else BookSummary(
                book,
                _counts(flow_counts.get(book.uuid)),
                _counts(task_counts.get(book.uuid)),
                orphaned.get(book.uuid, 0),
                _unread(flow_counts.get(book.uuid), task_counts.get(book.uuid)),
            )
            for book in shown
        ]
        following = None
        if len(found) > limit:
            last = shown[-1]
            following = (
                encode_cursor(last.created_at, last.uuid)
                if isinstance(last, LogBook)
                else encode_position(cursor, start + limit)
            )
        return Page(items, total, following, offset)

    def flows(
        self,
        *,
        limit: int = PAGE_SIZE,
        after: str | None = None,
        offset: int = 0,
        state: str | None = None,
        name: str | None = None,
        since: datetime | None = None,
        prefix: str | None = None,
        count: bool = True,
        peek: bool = True,
    ) -> Page[FlowSummary]:
        """Flow runs newest first, with owner and the span of their tasks' times.

        ``peek=False`` reads no row past the page (``next`` is None): listing around a
        corrupt flow, the row after a page is not this page's to fail on.
        """
        cursor = decode_cursor(after) if after else None
        limit, offset = check_limit(limit), check_offset(offset)
        state = check_state(state, states.FLOW_STATES)
        conn = self.conn
        now = datetime.now(UTC)
        with conn.snapshot():
            found = conn.list_flows(
                limit=limit + (1 if peek else 0),
                offset=offset,
                name=name,
                state=state,
                since=since,
                after=cursor,
                prefix=prefix or None,
            )
            shown = found[:limit]
            spans = conn.task_time_spans([flow.uuid for _, flow in shown]) if shown else {}
            total = (
                conn.count_flows(name=name, state=state, since=since, prefix=prefix or None)
                if count
                else None
            )
        items = [
            FlowSummary(book_uuid, flow, *spans.get(flow.uuid, (None, None)), lease_of(flow, now))
            for book_uuid, flow in shown
        ]
        return Page(items, total, next_cursor([flow for _, flow in found], limit), offset)

    # ---- records ------------------------------------------------------------------
    def kind(self, uuid: str) -> str:
        """'book', 'flow' or 'task'; NotFound, InvalidUUIDError."""
        return self.conn.locate(check_uuid(uuid)).kind

    def book(self, uuid: str, *, tolerant: bool = False) -> BookView:
        """A book with its flows and tasks; NotFound.

        ``tolerant``: a flow or task record that does not load is left out of the book
        and listed in ``corrupt`` instead of failing the view (the book's own record
        must load).
        """
        check_uuid(uuid, "logbook uuid")
        now = datetime.now(UTC)
        if not tolerant:
            book = self.conn.get_logbook(uuid)
            return BookView(book, {flow.uuid: lease_of(flow, now) for flow in book})
        with self.conn.snapshot():
            book = self.conn.get_logbook(uuid, lazy=True)
            found, corrupt = self._details("flow", [uuid], records.row_to_flow)
            flows = [flow for _, flow in found]
            for flow in flows:
                book.add(flow)
            parents = [flow.uuid for flow in flows]
            tasks, broken = self._details("task", parents, records.row_to_task)
        by_uuid = {flow.uuid: flow for flow in flows}
        for flow_uuid, task in tasks:
            by_uuid[flow_uuid].add(task)
        leases = {flow.uuid: lease_of(flow, now) for flow in book}
        return BookView(book, leases, tuple(entry for _, entry in corrupt + broken))

    def flow(self, uuid: str, *, tolerant: bool = False) -> FlowView:
        """A flow with its tasks and its book; NotFound.

        ``tolerant``: a task record that does not load is left out of the flow and
        listed in ``corrupt`` (with its place among the tasks) instead of failing the view.
        """
        check_uuid(uuid, "flow detail uuid")
        with self.conn.snapshot():
            return self._flow(self.conn.locate(uuid), tolerant)

    def _details(
        self, kind: Kind, parents: list[str], decode: Callable[[dict[str, Any]], T]
    ) -> tuple[list[tuple[str, T]], list[tuple[str, Corrupt]]]:
        """(parent uuid, record) for the ``kind`` records under ``parents``, and the corrupt.

        The built-in stores hand over their rows and each is decoded alone; another
        store's records are read through the contract, where a corrupt one fails all.
        """
        conn = self.conn
        good: list[tuple[str, T]] = []
        corrupt: list[tuple[str, Corrupt]] = []
        if not isinstance(conn, RecordConnection):
            for parent in parents:
                found: Sequence[Any] = (
                    conn.get_flows_for_book(parent)
                    if kind == "flow"
                    else conn.get_tasks_for_flow(parent)
                )
                good.extend((parent, record) for record in found)
            return good, corrupt
        places: dict[str, int] = {}
        for parent, uuid, row in child_rows(conn, kind, parents):
            place = places[parent] = places.get(parent, -1) + 1
            try:
                if isinstance(row, CorruptRecordError):
                    raise row
                good.append((parent, decode(row)))
            except CorruptRecordError as exc:
                name = None if isinstance(row, CorruptRecordError) else row.get("name")
                corrupt.append((parent, Corrupt(exc, uuid, name, place, parent)))
        return good, corrupt

    def task(self, uuid: str, *, tolerant: bool = False) -> TaskView:
        """A task with its flow and book above it; NotFound.

        ``tolerant``: a flow or book above it whose record does not load stands as its
        ``Corrupt`` instead of failing the view (the task's own record must load).
        """
        check_uuid(uuid, "task detail uuid")
        with self.conn.snapshot():
            return self._task(self.conn.locate(uuid), tolerant)

    def record(self, uuid: str, *, tolerant: bool = False) -> View:
        """The book, flow or task view that ``uuid`` names; NotFound (``tolerant``: as theirs)."""
        check_uuid(uuid)
        with self.conn.snapshot():
            ref = self.conn.locate(uuid)
            if ref.kind == "book":
                return self.book(uuid, tolerant=tolerant)
            return self._flow(ref, tolerant) if ref.kind == "flow" else self._task(ref, tolerant)

    def _flow(self, ref: RecordRef, tolerant: bool = False) -> FlowView:
        if ref.kind != "flow":
            raise _wrong_kind(ref.uuid, "flow detail", ref.kind)
        corrupt: tuple[Corrupt, ...] = ()
        if tolerant:
            flow = self.conn.get_flow_details(ref.uuid, lazy=True)
            tasks, broken = self._details("task", [ref.uuid], records.row_to_task)
            for _, task in tasks:
                flow.add(task)
            corrupt = tuple(entry for _, entry in broken)
        else:
            flow = self.conn.get_flow_details(ref.uuid)
        book = _above(self.conn.get_logbook, ref.book_uuid, tolerant)
        now = datetime.now(UTC)
        return FlowView(book, flow, lease_of(flow, now), now, corrupt)

    def _task(self, ref: RecordRef, tolerant: bool = False) -> TaskView:
        if ref.kind != "task":
            raise _wrong_kind(ref.uuid, "task detail", ref.kind)
        task = self.conn.get_task_details(ref.uuid)
        flow = _above(self.conn.get_flow_details, ref.flow_uuid, tolerant)
        book = _above(self.conn.get_logbook, ref.book_uuid, tolerant)
        return TaskView(book, flow, task)


def _above(read: Callable[..., T], uuid: str | None, tolerant: bool) -> T | Corrupt:
    """The record above a view, without details (``tolerant``: a corrupt one as ``Corrupt``)."""
    try:
        return read(uuid or "", lazy=True)
    except CorruptRecordError as exc:
        if not tolerant:
            raise
        return Corrupt(exc, uuid)


def _counts(found: dict[str, int] | CorruptRecordError | None) -> dict[str, int]:
    return found if isinstance(found, dict) else {}


def _unread(*counts: dict[str, int] | CorruptRecordError | None) -> Corrupt | None:
    """The record that kept a book's counts from reading, if one did."""
    errors = [found for found in counts if isinstance(found, CorruptRecordError)]
    return Corrupt(errors[0]) if errors else None


def _wrong_kind(uuid: str, wanted: str, kind: str) -> NotFound:
    names = {"book": "a logbook", "flow": "a flow detail", "task": "a task detail"}
    return NotFound(f"no {wanted} with uuid {uuid!r} ({uuid[:40]!r} is {names[kind]})")
