"""The read model behind ``ledgerflow books/flows/show`` and the web view.

Every view is read in one snapshot of the store (``Connection.snapshot``), so a
record and its header (book above a flow, flow above a task) always agree.  Lists
are paged by a keyset cursor over the ``(created_at, uuid)`` index: page 2,000 costs
what page 1 costs.  ``offset`` stays for small stores and for "page N" links.
Nothing here writes.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from ledgerflow import states
from ledgerflow.corrupt import Corrupt, child_rows, per_item, robust_page
from ledgerflow.engine import identity
from ledgerflow.errors import CorruptRecordError, NotFound
from ledgerflow.models import Failure, FlowDetail, LogBook, TaskDetail
from ledgerflow.persistence import records
from ledgerflow.persistence.base import Connection, RecordConnection, RecordRef
from ledgerflow.persistence.listing import Cursor
from ledgerflow.persistence.records import Kind, check_uuid
from ledgerflow.persistence.uri import mask_password
from ledgerflow.timelines import Bar, Timeline, count_states, task_tries, timeline

__all__ = [
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
    "check_uuid",
    "count_states",
    "decode_cursor",
    "encode_cursor",
    "mask_password",
    "per_item",
    "robust_page",
    "task_tries",
    "timeline",
]

#: Items per page unless the caller says otherwise (API.md: 50).
PAGE_SIZE = 50
#: The most a page may hold (a bigger limit is a ValueError, so a URL cannot ask for all).
MAX_PAGE = 1000
T = TypeVar("T")
U = TypeVar("U")


def encode_cursor(created_at: datetime, uuid: str) -> str:
    """An opaque, URL-safe text for the keyset position (created_at, uuid)."""
    raw = json.dumps([created_at.astimezone(UTC).isoformat(), uuid], ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")


def decode_cursor(text: str) -> Cursor:
    """The (created_at, uuid) that ``encode_cursor`` made; ValueError naming a bad one."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        at_text, uuid = json.loads(raw.decode("utf-8"))
        at = datetime.fromisoformat(at_text)
        if at.tzinfo is None or not isinstance(uuid, str):
            raise ValueError("not an aware time and a uuid")
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed cursor {text[:80]!r}: use the 'next' value of a page") from exc
    return at, uuid


def _position(text: str | None) -> tuple[Cursor | None, int]:
    """The keyset cursor and the rows to skip past it that a page's ``next`` names.

    A plain cursor is ``encode_cursor``'s; a page listed around a corrupt record ends
    in a position instead (a cursor, or none, plus a count of rows), see
    ``encode_position``.
    """
    if not text:
        return None, 0
    try:
        raw = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("utf-8"))
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raw = None
    if isinstance(raw, list) and len(raw) == 3:
        at_text, uuid, skip = raw
        if isinstance(skip, int) and not isinstance(skip, bool) and skip >= 0:
            if at_text is None and uuid is None:
                return None, skip
            return decode_cursor(encode_cursor(_aware(at_text), uuid)), skip
    return decode_cursor(text), 0


def _aware(text: object) -> datetime:
    at = datetime.fromisoformat(text) if isinstance(text, str) else None
    if at is None or at.tzinfo is None:
        raise ValueError("malformed cursor: use the 'next' value of a page")
    return at


def encode_position(cursor: Cursor | None, skip: int) -> str:
    """An opaque text for "``skip`` rows past ``cursor``" (None: from the first row)."""
    at = None if cursor is None else cursor[0].astimezone(UTC).isoformat()
    raw = json.dumps([at, None if cursor is None else cursor[1], skip], ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing: its items, how many match in all, and the next cursor."""

    items: list[T]
    total: int | None  # None when the caller asked not to count (count=False)
    next: str | None
    offset: int = 0


@dataclass(frozen=True)
class Lease:
    """Who holds a flow: its owner, fence and lease, and what that means now."""

    owner: str | None
    fence: int
    expires_at: datetime | None
    status: str  # "free", "held", "expired" or "gone" (its process on this host died)

    def describe(self) -> str:
        """One line for people: 'free', 'held by X until T', ..."""
        if self.owner is None:
            return "free" if not self.fence else f"free (taken {self.fence} times)"
        until = "" if self.expires_at is None else f" until {self.expires_at:%Y-%m-%d %H:%M:%S}Z"
        return {
            "held": f"held by {self.owner}{until}",
            "expired": f"{self.owner}: lease expired{until.replace(' until', ' at')}",
            "gone": f"{self.owner}: owner process is gone",
        }[self.status]


def lease_of(flow: FlowDetail, now: datetime | None = None) -> Lease:
    """The flow's ownership and what it means now ("gone": its process on this host died)."""
    return _lease(flow.uuid, flow.owner, flow.fence, flow.lease_expires_at, now)


def _lease(
    flow_uuid: str, owner: str | None, fence: int, expires: datetime | None, now: datetime | None
) -> Lease:
    now = now or datetime.now(UTC)
    if owner is None:
        status = "free"
    elif identity.is_gone(owner, flow_uuid):
        status = "gone"
    elif expires is not None and expires <= now:
        status = "expired"
    else:
        status = "held"
    return Lease(owner, fence, expires, status)


def _orphaned(conn: Connection, book_uuids: set[str]) -> dict[str, int]:
    """Per book uuid, how many of its RUNNING flows nobody runs any more.

    The built-in stores read the flow rows of just these books (one query, nothing
    decoded but the rows' own fields); another store's RUNNING flows are scanned,
    newest first, up to ``ORPHAN_SCAN``.  A corrupt flow row counts as not orphaned.
    """
    counts: dict[str, int] = {}
    now = datetime.now(UTC)
    if isinstance(conn, RecordConnection):
        rows = conn._fetch_many("flow", parents=sorted(book_uuids))
        found = [(row["book_uuid"], row) for row in rows if row["state"] == states.RUNNING]
        for book_uuid, row in found:
            lease = _lease(row["uuid"], row["owner"], row["fence"], row["lease_expires_at"], now)
            if lease.status != "held":
                counts[book_uuid] = counts.get(book_uuid, 0) + 1
        return counts
    for book_uuid, flow in conn.list_flows(state=states.RUNNING, limit=ORPHAN_SCAN):
        if book_uuid in book_uuids and lease_of(flow, now).status != "held":
            counts[book_uuid] = counts.get(book_uuid, 0) + 1
    return counts


#: RUNNING flows looked at (newest first) to tell which books have one nobody runs.
ORPHAN_SCAN = 10_000


@dataclass(frozen=True)
class BookSummary:
    """A book without details, with how many of its flows and tasks are in each state."""

    book: LogBook
    flow_states: dict[str, int]
    task_states: dict[str, int]
    #: RUNNING flows whose owner is gone (died on this host, or its lease ran out).
    orphaned: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The book's ``to_dict()`` (no nested flows) plus the counts."""
        data = self.book.to_dict()
        data.pop("flows", None)
        return {
            **data,
            "flow_states": self.flow_states,
            "task_states": self.task_states,
            "orphaned_flows": self.orphaned,
        }


@dataclass(frozen=True)
class FlowSummary:
    """A flow run in a listing: the flow (no tasks), its book, owner and time span."""

    book_uuid: str
    flow: FlowDetail
    started_at: datetime | None
    finished_at: datetime | None
    lease: Lease

    @property
    def duration(self) -> float | None:
        """Seconds from its first task's start to its last task's finish (now while running)."""
        if self.started_at is None:
            return None
        end = self.finished_at
        if self.flow.state in (states.RUNNING, states.REVERTING, states.SUSPENDING) or end is None:
            end = max(end or self.started_at, datetime.now(UTC))
        return max(0.0, (end - self.started_at).total_seconds())

    def to_dict(self) -> dict[str, Any]:
        """The keys API.md names for ``ledgerflow flows --json``, plus the duration."""
        flow = self.flow
        return {
            "uuid": flow.uuid,
            "name": flow.name,
            "state": flow.state,
            "book_uuid": self.book_uuid,
            "owner": self.lease.owner,
            "created_at": flow.created_at.isoformat(),
            "updated_at": flow.updated_at.isoformat(),
            "duration": self.duration,
        }


@dataclass(frozen=True)
class BookView:
    """A book with its flows and tasks (read ``tolerant``: and those that do not load)."""

    book: LogBook
    leases: dict[str, Lease] = field(default_factory=dict)
    #: Flow and task records of the book that are corrupt (they are left out of ``book``).
    corrupt: tuple[Corrupt, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The book's ``to_dict()`` (API.md: the JSON twin of ``/books/{uuid}``).

        A corrupt flow or task shows as its ``Corrupt.to_dict()`` in ``corrupt``.
        """
        data = self.book.to_dict()
        if self.corrupt:
            data["corrupt"] = [entry.to_dict() for entry in self.corrupt]
        return data


@dataclass(frozen=True)
class FlowView:
    """A flow with its tasks, its book (without details), lease and timeline."""

    book: LogBook
    flow: FlowDetail
    lease: Lease
    now: datetime
    #: Task records of the flow that are corrupt (they are left out of ``flow``).
    corrupt: tuple[Corrupt, ...] = ()

    @property
    def task_states(self) -> dict[str, int]:
        """How many tasks are in each state."""
        return count_states(self.flow)

    def timeline(self, rows: int | None = None) -> Timeline | None:
        """The flow's timeline (``rows``: at most that many bars)."""
        return timeline(self.flow.tasks, self.now, rows)

    def failures(self) -> list[tuple[TaskDetail, Failure]]:
        """Tasks with a failure or revert failure, in flow order."""
        found: list[tuple[TaskDetail, Failure]] = []
        for task in self.flow:
            for failure in (task.failure, task.revert_failure):
                if failure is not None:
                    found.append((task, failure))
        return found

    def to_dict(self) -> dict[str, Any]:
        """The flow's ``to_dict()`` (API.md: the JSON twin of ``/flows/{uuid}``).

        A corrupt task is in ``tasks`` in its place, as its ``Corrupt.to_dict()``.
        """
        data = self.flow.to_dict()
        for entry in sorted(self.corrupt, key=lambda c: c.position or 0):
            data["tasks"].insert(entry.position or 0, entry.to_dict())
        return data


@dataclass(frozen=True)
class TaskView:
    """A task with its flow and book above it (both without details)."""

    book: LogBook
    flow: FlowDetail
    task: TaskDetail

    @property
    def tries(self) -> list[dict[str, Any]]:
        """Every try, oldest first."""
        return task_tries(self.task)

    def to_dict(self) -> dict[str, Any]:
        """The task's ``to_dict()`` (API.md: the JSON twin of ``/tasks/{uuid}``)."""
        return self.task.to_dict()


View = BookView | FlowView | TaskView


def _check_limit(limit: int) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be an integer from 1 to {MAX_PAGE}, not {limit!r}")
    return limit


def _check_offset(offset: int) -> int:
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise ValueError(f"offset must be a non-negative integer, not {offset!r}")
    return offset


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
        cursor, skip = _position(after)
        limit, offset = _check_limit(limit), _check_offset(offset)
        state = _check_state(state, states.FLOW_STATES)
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
            orphaned = _orphaned(conn, running) if running else {}
        items = [
            BookSummary(
                book,
                flow_counts.get(book.uuid, {}),
                task_counts.get(book.uuid, {}),
                orphaned.get(book.uuid, 0),
            )
            for book in shown
        ]
        return Page(items, total, _next(found, limit), offset)

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
        cursor, skip = _position(after)
        limit, offset = _check_limit(limit), _check_offset(offset)
        state = _check_state(state, states.FLOW_STATES)
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
                orphaned = _orphaned(conn, running) if running else {}
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
        limit, offset = _check_limit(limit), _check_offset(offset)
        state = _check_state(state, states.FLOW_STATES)
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
        return Page(items, total, _next([flow for _, flow in found], limit), offset)

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
                corrupt.append((parent, Corrupt(exc, uuid, name, place)))
        return good, corrupt

    def task(self, uuid: str) -> TaskView:
        """A task with its flow and book above it; NotFound."""
        check_uuid(uuid, "task detail uuid")
        with self.conn.snapshot():
            return self._task(self.conn.locate(uuid))

    def record(self, uuid: str) -> View:
        """The book, flow or task view that ``uuid`` names; NotFound."""
        check_uuid(uuid)
        with self.conn.snapshot():
            ref = self.conn.locate(uuid)
            if ref.kind == "book":
                return self.book(uuid)
            return self._flow(ref) if ref.kind == "flow" else self._task(ref)

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
        book = self.conn.get_logbook(ref.book_uuid or "", lazy=True)
        now = datetime.now(UTC)
        return FlowView(book, flow, lease_of(flow, now), now, corrupt)

    def _task(self, ref: RecordRef) -> TaskView:
        if ref.kind != "task":
            raise _wrong_kind(ref.uuid, "task detail", ref.kind)
        task = self.conn.get_task_details(ref.uuid)
        flow = self.conn.get_flow_details(ref.flow_uuid or "", lazy=True)
        book = self.conn.get_logbook(ref.book_uuid or "", lazy=True)
        return TaskView(book, flow, task)


def _counts(found: dict[str, int] | CorruptRecordError | None) -> dict[str, int]:
    return found if isinstance(found, dict) else {}


def _next(found: Sequence[LogBook | FlowDetail], limit: int) -> str | None:
    if len(found) <= limit:
        return None
    last = found[limit - 1]
    return encode_cursor(last.created_at, last.uuid)


def _check_state(state: str | None, allowed: Iterable[str]) -> str | None:
    if not state:
        return None
    wanted = state.upper()
    if wanted not in set(allowed):
        raise ValueError(
            f"unknown state {state[:40]!r}: expected one of {', '.join(sorted(allowed))}"
        )
    return wanted


def _wrong_kind(uuid: str, wanted: str, kind: str) -> NotFound:
    names = {"book": "a logbook", "flow": "a flow detail", "task": "a task detail"}
    return NotFound(f"no {wanted} with uuid {uuid!r} ({uuid[:40]!r} is {names[kind]})")
