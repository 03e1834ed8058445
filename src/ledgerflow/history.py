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
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from ledgerflow import states
from ledgerflow.errors import NotFound
from ledgerflow.models import Failure, FlowDetail, LogBook, TaskDetail
from ledgerflow.persistence.base import Connection, Cursor
from ledgerflow.persistence.records import check_uuid
from ledgerflow.persistence.uri import mask_password

__all__ = [
    "PAGE_SIZE",
    "BookSummary",
    "BookView",
    "FlowSummary",
    "FlowView",
    "History",
    "Lease",
    "Page",
    "TaskView",
    "Timeline",
    "check_uuid",
    "decode_cursor",
    "encode_cursor",
    "mask_password",
    "task_tries",
    "timeline",
]

#: Items per page unless the caller says otherwise (API.md: 50).
PAGE_SIZE = 50
#: The most a page may hold (a bigger limit is a ValueError, so a URL cannot ask for all).
MAX_PAGE = 1000
T = TypeVar("T")


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


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing: its items, how many match in all, and the next cursor."""

    items: list[T]
    total: int
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
    """The flow's ownership (issue 8's fields, read tolerantly: a store without them is free)."""
    owner: str | None = getattr(flow, "owner", None)
    fence = int(getattr(flow, "fence", 0) or 0)
    expires: datetime | None = getattr(flow, "lease_expires_at", None)
    now = now or datetime.now(UTC)
    if owner is None:
        status = "free"
    elif _local_process_gone(owner):
        status = "gone"
    elif expires is not None and expires <= now:
        status = "expired"
    else:
        status = "held"
    return Lease(owner, fence, expires, status)


def _local_process_gone(owner: str) -> bool:
    """Whether ``host:pid:start`` names a process on this host that no longer exists."""
    host, _, rest = owner.partition(":")
    pid_text = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists but is not ours to signal
        return False
    return False


@dataclass(frozen=True)
class BookSummary:
    """A book without details, with how many of its flows and tasks are in each state."""

    book: LogBook
    flow_states: dict[str, int]
    task_states: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        """The book's ``to_dict()`` (no nested flows) plus the two counts."""
        data = self.book.to_dict()
        data.pop("flows", None)
        return {**data, "flow_states": self.flow_states, "task_states": self.task_states}


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
class Bar:
    """One task on a timeline: seconds from the axis start, length, still open."""

    task: TaskDetail
    offset: float
    length: float
    open_ended: bool


@dataclass(frozen=True)
class Timeline:
    """Tasks on a shared time axis (``start`` + ``span`` seconds); ``total`` were timed."""

    start: datetime
    span: float
    bars: list[Bar]
    total: int


def timeline(
    tasks: Sequence[TaskDetail], now: datetime, rows: int | None = None
) -> Timeline | None:
    """The timeline of ``tasks`` (None if none started); past ``rows``, the longest ones.

    A task still RUNNING draws to ``now``; one whose end is unknown for another reason
    draws to the end of the axis.
    """
    timed = [t for t in tasks if t.started_at is not None]
    if not timed:
        return None
    starts = [t.started_at for t in timed if t.started_at is not None]
    ends = [t.finished_at for t in timed if t.finished_at is not None]
    start, end = min(starts), max([*ends, *starts])
    if any(t.finished_at is None and t.state == states.RUNNING for t in timed):
        end = max(end, now)
    span = max((end - start).total_seconds(), 1e-6)

    def bar(task: TaskDetail) -> Bar:
        assert task.started_at is not None
        stop = task.finished_at or end
        offset = (task.started_at - start).total_seconds()
        return Bar(task, offset, max(0.0, (stop - task.started_at).total_seconds()), stop is end)

    bars = [bar(t) for t in timed]
    if rows is not None and len(bars) > rows:
        bars = sorted(bars, key=lambda b: b.length, reverse=True)[:rows]
        bars.sort(key=lambda b: (b.offset, b.task.name))
    return Timeline(start, span, bars, len(timed))


def task_tries(task: TaskDetail) -> list[dict[str, Any]]:
    """Every try of ``task``, oldest first (``td.tries`` where stored, API.md "Tries").

    A store written before tries were recorded knows only the last one: it is
    rebuilt from the task's own fields.
    """
    stored = getattr(task, "tries", None)
    if stored:
        return [dict(entry) for entry in stored]
    if not task.attempts:
        return []
    if task.failure is not None:
        state = states.FAILURE
    elif task.state == states.RUNNING and task.finished_at is None:
        state = states.RUNNING
    elif task.finished_at is not None or task.state in states.TASK_STATES:
        state = states.SUCCESS  # ended without a failure (maybe reverted since)
    return [
        {
            "attempt": task.attempts,
            "started_at": task.started_at,
            "finished_at": task.finished_at,
            "state": state,
            "failure": task.failure,
        }
    ]


def count_states(items: Iterable[FlowDetail | TaskDetail]) -> dict[str, int]:
    """How many of ``items`` are in each state."""
    counts: dict[str, int] = {}
    for item in items:
        counts[item.state] = counts.get(item.state, 0) + 1
    return counts


@dataclass(frozen=True)
class BookView:
    """A book with its flows and tasks."""

    book: LogBook
    leases: dict[str, Lease] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The book's ``to_dict()`` (API.md: the JSON twin of ``/books/{uuid}``)."""
        return self.book.to_dict()


@dataclass(frozen=True)
class FlowView:
    """A flow with its tasks, its book (without details), lease and timeline."""

    book: LogBook
    flow: FlowDetail
    lease: Lease
    now: datetime

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
        """The flow's ``to_dict()`` (API.md: the JSON twin of ``/flows/{uuid}``)."""
        return self.flow.to_dict()


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
    ) -> Page[BookSummary]:
        """Books newest first (or oldest), with their flow and task state counts."""
        cursor = decode_cursor(after) if after else None
        limit, offset = _check_limit(limit), _check_offset(offset)
        state = _check_state(state, states.FLOW_STATES)
        conn = self.conn
        with conn.snapshot():
            found = conn.list_logbooks(
                limit=limit + 1,
                offset=offset,
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
            total = conn.count_logbooks(name=name, state=state, prefix=prefix or None)
        items = [
            BookSummary(book, flow_counts.get(book.uuid, {}), task_counts.get(book.uuid, {}))
            for book in shown
        ]
        return Page(items, total, _next(found, limit), offset)

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
    ) -> Page[FlowSummary]:
        """Flow runs newest first, with owner and the span of their tasks' times."""
        cursor = decode_cursor(after) if after else None
        limit, offset = _check_limit(limit), _check_offset(offset)
        state = _check_state(state, states.FLOW_STATES)
        conn = self.conn
        now = datetime.now(UTC)
        with conn.snapshot():
            found = conn.list_flows(
                limit=limit + 1,
                offset=offset,
                name=name,
                state=state,
                since=since,
                after=cursor,
                prefix=prefix or None,
            )
            shown = found[:limit]
            spans = conn.task_time_spans([flow.uuid for _, flow in shown]) if shown else {}
            total = conn.count_flows(name=name, state=state, since=since, prefix=prefix or None)
        items = [
            FlowSummary(book_uuid, flow, *spans.get(flow.uuid, (None, None)), lease_of(flow, now))
            for book_uuid, flow in shown
        ]
        return Page(items, total, _next([flow for _, flow in found], limit), offset)

    # ---- records ------------------------------------------------------------------
    def kind(self, uuid: str) -> str:
        """'book', 'flow' or 'task'; NotFound, InvalidUUIDError."""
        return self.conn.locate(check_uuid(uuid)).kind

    def book(self, uuid: str) -> BookView:
        """A book with its flows and tasks; NotFound."""
        check_uuid(uuid, "logbook uuid")
        book = self.conn.get_logbook(uuid)
        now = datetime.now(UTC)
        return BookView(book, {flow.uuid: lease_of(flow, now) for flow in book})

    def flow(self, uuid: str) -> FlowView:
        """A flow with its tasks and its book; NotFound."""
        check_uuid(uuid, "flow detail uuid")
        conn = self.conn
        with conn.snapshot():
            ref = conn.locate(uuid)
            if ref.kind != "flow":
                raise _wrong_kind(uuid, "flow detail", ref.kind)
            flow = conn.get_flow_details(uuid)
            book = conn.get_logbook(ref.book_uuid or "", lazy=True)
        now = datetime.now(UTC)
        return FlowView(book, flow, lease_of(flow, now), now)

    def task(self, uuid: str) -> TaskView:
        """A task with its flow and book above it; NotFound."""
        check_uuid(uuid, "task detail uuid")
        conn = self.conn
        with conn.snapshot():
            ref = conn.locate(uuid)
            if ref.kind != "task":
                raise _wrong_kind(uuid, "task detail", ref.kind)
            task = conn.get_task_details(uuid)
            flow = conn.get_flow_details(ref.flow_uuid or "", lazy=True)
            book = conn.get_logbook(ref.book_uuid or "", lazy=True)
        return TaskView(book, flow, task)

    def record(self, uuid: str) -> View:
        """The book, flow or task view that ``uuid`` names; NotFound."""
        with self.conn.snapshot():
            kind = self.kind(uuid)
            if kind == "book":
                return self.book(uuid)
            return self.flow(uuid) if kind == "flow" else self.task(uuid)


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
