"""What the read model hands out: listing summaries and views of one record.

A summary is one row of a listing (a book with its state counts, a flow run with
its owner and time span); a view is a record with its header above it (book above
a flow, flow above a task), read by ``history.History`` in one snapshot.  Each has
``to_dict()``, the JSON the web view's ``/api/`` twins return.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ledgerflow import states
from ledgerflow.corrupt import Corrupt, in_place
from ledgerflow.leases import Lease
from ledgerflow.models import Failure, FlowDetail, LogBook, TaskDetail
from ledgerflow.timelines import Timeline, count_states, task_tries, timeline

__all__ = ["BookSummary", "BookView", "FlowSummary", "FlowView", "TaskView", "View"]


@dataclass(frozen=True)
class BookSummary:
    """A book without details, with how many of its flows and tasks are in each state."""

    book: LogBook
    flow_states: dict[str, int]
    task_states: dict[str, int]
    #: RUNNING flows whose owner is gone (died on this host, or its lease ran out).
    orphaned: int = 0
    #: A flow or task record of the book that is corrupt, so its counts could not be read.
    corrupt: Corrupt | None = None

    def to_dict(self) -> dict[str, Any]:
        """The book's ``to_dict()`` (no nested flows) plus the counts.

        When a record under the book is corrupt the counts are not known: they are
        null, and ``corrupt`` names the record that does not read.
        """
        data = self.book.to_dict()
        data.pop("flows", None)
        if self.corrupt is not None:
            unknown = {"flow_states": None, "task_states": None, "orphaned_flows": None}
            return {**data, **unknown, "corrupt": self.corrupt.message}
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

    def corrupt_records(self) -> tuple[Corrupt, ...]:
        """Every record of the view that does not load: its corrupt flows and tasks."""
        return self.corrupt

    def corrupt_under(self, uuid: str) -> list[Corrupt]:
        """The corrupt records whose parent is ``uuid`` (the book, or one of its flows)."""
        return [entry for entry in self.corrupt if entry.parent == uuid]


@dataclass(frozen=True)
class FlowView:
    """A flow with its tasks, its book (without details), lease and timeline.

    ``book`` is a ``Corrupt`` when the book's record does not load (read ``tolerant``).
    """

    book: LogBook | Corrupt
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

        A corrupt task is in ``tasks`` in its place, as its ``Corrupt.to_dict()``; a
        corrupt book above it is ``corrupt_book``.
        """
        data = self.flow.to_dict()
        data["tasks"] = [
            entry.to_dict() if isinstance(entry, Corrupt) else entry
            for entry in in_place(data["tasks"], self.corrupt)
        ]
        return {**data, **_corrupt_headers(book=self.book)}

    def corrupt_records(self) -> tuple[Corrupt, ...]:
        """Every record of the view that does not load: the book above, then tasks."""
        return _corrupt(self.book) + self.corrupt


@dataclass(frozen=True)
class TaskView:
    """A task with its flow and book above it (both without details).

    ``book`` and ``flow`` are a ``Corrupt`` when their record does not load (read
    ``tolerant``).
    """

    book: LogBook | Corrupt
    flow: FlowDetail | Corrupt
    task: TaskDetail

    @property
    def tries(self) -> list[dict[str, Any]]:
        """Every try, oldest first."""
        return task_tries(self.task)

    def to_dict(self) -> dict[str, Any]:
        """The task's ``to_dict()`` (API.md: the JSON twin of ``/tasks/{uuid}``).

        A corrupt flow or book above it is ``corrupt_flow`` or ``corrupt_book``.
        """
        return {**self.task.to_dict(), **_corrupt_headers(book=self.book, flow=self.flow)}

    def corrupt_records(self) -> tuple[Corrupt, ...]:
        """Every record of the view that does not load: the book and flow above it."""
        return _corrupt(self.book) + _corrupt(self.flow)


View = BookView | FlowView | TaskView


def _corrupt(record: object) -> tuple[Corrupt, ...]:
    return (record,) if isinstance(record, Corrupt) else ()


def _corrupt_headers(**headers: object) -> dict[str, Any]:
    """``{"corrupt_<kind>": Corrupt.to_dict()}`` for each header record that is corrupt."""
    return {
        f"corrupt_{kind}": header.to_dict()
        for kind, header in headers.items()
        if isinstance(header, Corrupt)
    }
