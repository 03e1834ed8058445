"""The backend contract: ``Backend``, ``Connection`` and the primitives a backend writes.

Every backend is a ``Backend`` that hands out ``Connection``s.  The public methods
of ``Connection`` are the contract (see API.md, Persistence).  ``RecordConnection``
(``primitives``) implements all of them on eight primitives over flat rows (see
``records``), so a new backend writes only those:

``_transaction``   a context in which every write is atomic (all or nothing)
``_fetch``         rows by uuid or by parent uuid, in insertion order
``_snapshot``      (optional) a context in which several reads see one moment
``_list_books``    book rows newest-first-stable, paged (offset or keyset) and filtered
``_list_flows``    (optional) the same for flow rows; the default reads every book's flows
``_insert``        new rows
``_update``        compare-and-set of one row (revision check in the same statement)
``_delete_book``   a book with its flows and tasks
``_clear``         everything
``_upgrade`` / ``_validate``   schema management
``_put_ownership`` the ownership columns of a flow row (see ``ownership``); a server
                   store overrides ``change_ownership`` whole, to use its own clock
``_fence``         (optional) make the current transaction's writes check a flow's fence

Revisions: a model with ``revision == 0`` has never been read from or written to
a store, so writing it is unconditional (insert, or overwrite the stored record).
A model with ``revision > 0`` is a copy of stored revision N; writing it succeeds
only if the store still holds revision N, and raises ``ConflictError`` otherwise.
Either way the stored revision becomes the previous one plus one, and so does the
passed object's, but only once the write committed.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, ClassVar, Self

from ledgerflow.errors import FencedOut
from ledgerflow.models import FlowDetail, LogBook, TaskDetail
from ledgerflow.persistence import care
from ledgerflow.persistence.care import Damage, PurgePolicy
from ledgerflow.persistence.listing import (
    Cursor,
)
from ledgerflow.persistence.ownership import OwnChange, Ownership
from ledgerflow.persistence.records import Kind
from ledgerflow.persistence.uri import mask_password

__all__ = ["Backend", "Connection", "Fence", "RecordRef", "fenced_out"]

#: (flow uuid, fence): a write made under it lands only while the flow's fence is that.
Fence = tuple[str, int]


@dataclass(frozen=True)
class RecordRef:
    """Where a uuid lives: its kind and the uuids of its book and flow."""

    kind: Kind
    uuid: str
    book_uuid: str | None
    flow_uuid: str | None


class Connection(abc.ABC):
    """A session with a store; every method is atomic and returns independent copies.

    Unknown uuids raise ``NotFound``; a malformed uuid ``InvalidUUIDError``; a value
    JSON cannot encode ``SerializationError`` (nothing written); a stale write
    ``ConflictError``; any other failure of the store ``StorageError`` with the
    driver's exception as ``__cause__``.
    """

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release what this connection holds; the backend stays open."""

    def snapshot(self) -> contextlib.AbstractContextManager[None]:
        """Context in which successive reads see the store as of one moment (may nest)."""
        return contextlib.nullcontext()

    @abc.abstractmethod
    def upgrade(self) -> None:
        """Create or migrate the schema to the current version; idempotent."""

    @abc.abstractmethod
    def validate(self) -> None:
        """Raise StorageError (SchemaVersionError) unless the store is usable as it is."""

    @abc.abstractmethod
    def save_logbook(self, book: LogBook) -> LogBook:
        """Insert or merge ``book`` with all its details atomically; return it, revisions bumped.

        Flows and tasks already stored but absent from ``book`` are kept.
        """

    @abc.abstractmethod
    def get_logbook(self, uuid: str, lazy: bool = False) -> LogBook:
        """Return the book (with flows and tasks unless ``lazy``); NotFound if unknown."""

    @abc.abstractmethod
    def get_logbooks(
        self,
        *,
        limit: int | None = None,
        offset: int = 0,
        name: str | None = None,
        lazy: bool = False,
    ) -> list[LogBook]:
        """Return books ordered by (created_at, uuid), paged and filtered by exact name."""

    @abc.abstractmethod
    def destroy_logbook(self, uuid: str) -> None:
        """Delete a book with its flow and task details; NotFound if unknown."""

    def destroy_task_details(self, flow_uuid: str, task_uuids: Sequence[str]) -> None:
        """Delete these task details of flow ``flow_uuid`` together; NotFound if one is unknown.

        The built-in backends implement it; the default says it is not supported.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot delete task details")

    @abc.abstractmethod
    def update_flow_details(
        self, flow_detail: FlowDetail, *, fence: Fence | None = None
    ) -> FlowDetail:
        """Write the flow record and insert its task details not stored yet; return it.

        With ``fence`` the write lands only while the flow's fence is that (else
        ``FencedOut``, nothing written), checked in the same transaction.
        """

    @abc.abstractmethod
    def update_task_details(self, task_detail: TaskDetail) -> TaskDetail:
        """Write a stored task record; NotFound unless it was saved before; return it."""

    @abc.abstractmethod
    def update_details(self, *details: FlowDetail | TaskDetail, fence: Fence | None = None) -> None:
        """Write several stored flow/task records in one transaction (all or nothing).

        With ``fence`` (flow uuid, fence) every row is written only while that flow's
        fence is still the one given, checked in the same statement(s) or transaction
        (no extra round trip on a server): else ``FencedOut`` and nothing is written.
        """

    def commit_details(
        self,
        *details: FlowDetail | TaskDetail,
        fence: Fence,
        new: Sequence[TaskDetail] = (),
        release: OwnChange | None = None,
    ) -> None:
        """``update_details(*details, fence=fence)``, inserting ``new`` and applying ``release``.

        ``new``: task details of the fenced flow, in its flow detail, not stored yet
        (none of them among ``details``), inserted as they are; the flow detail must then
        be among ``details``, whose fenced write vouches for them.  ``release``: a
        "release" of the fenced flow under that same fence.  An engine's first commit
        stores the tasks it added, and the one that ends its flow lets go of it, this way
        rather than in commits of their own.  FencedOut (nothing written) as for
        ``update_details``.  This default, for a backend written before this method,
        makes the writes one after another; ``RecordConnection`` makes them one
        transaction.
        """
        flow = _check_commit(details, fence, new, release)
        if new:
            assert flow is not None  # _check_commit: the flow detail comes with new tasks
            self.update_flow_details(flow, fence=fence)  # its row and the tasks not stored
            details = tuple(detail for detail in details if detail is not flow)
        if details:
            self.update_details(*details, fence=fence)
        if release is not None and not self.change_ownership(fence[0], release):
            raise fenced_out(fence[0], fence[1], self.get_ownership(fence[0]).fence)

    @abc.abstractmethod
    def get_ownership(self, flow_uuid: str) -> Ownership:
        """Return the flow's owner, fence, lease and pending request; NotFound if unknown."""

    @abc.abstractmethod
    def change_ownership(self, flow_uuid: str, change: OwnChange) -> bool:
        """Apply one compare-and-set of ``ownership`` to the flow; False if it did not hold.

        Atomic: of two takers racing for one flow exactly one gets True.  NotFound if
        there is no such flow.  Revisions do not change.
        """

    def take_ownership(self, flow_uuid: str, change: OwnChange) -> Ownership | None:
        """Apply the take ``change``; the ownership right after it, or None if it did not hold.

        A store whose server returns updated rows does it in one statement; others
        apply the compare-and-set, then read the flow's ownership again.
        """
        if not self.change_ownership(flow_uuid, change):
            return None
        return self.get_ownership(flow_uuid)

    @abc.abstractmethod
    def get_flow_details(self, uuid: str, lazy: bool = False) -> FlowDetail:
        """Return the flow detail (with its tasks unless ``lazy``); NotFound if unknown."""

    @abc.abstractmethod
    def get_task_details(self, uuid: str) -> TaskDetail:
        """Return the task detail; NotFound if unknown."""

    @abc.abstractmethod
    def get_flows_for_book(self, book_uuid: str) -> list[FlowDetail]:
        """Return the book's flow details, each with its tasks; NotFound if no such book."""

    @abc.abstractmethod
    def get_tasks_for_flow(self, flow_uuid: str) -> list[TaskDetail]:
        """Return the flow's task details in order; NotFound if no such flow."""

    @abc.abstractmethod
    def locate(self, uuid: str) -> RecordRef:
        """Tell whether ``uuid`` is a book, flow or task and where it lives; NotFound."""

    @abc.abstractmethod
    def count_logbooks(
        self, *, name: str | None = None, state: str | None = None, prefix: str | None = None
    ) -> int:
        """Count the books matching the filters of ``list_logbooks``."""

    @abc.abstractmethod
    def list_logbooks(
        self,
        *,
        limit: int | None = None,
        offset: int = 0,
        name: str | None = None,
        state: str | None = None,
        newest_first: bool = False,
        after: Cursor | None = None,
        prefix: str | None = None,
    ) -> list[LogBook]:
        """Return books without details; ``state`` keeps books with a flow in that state.

        ``after`` is a keyset cursor: only books past that (created_at, uuid) in the
        chosen order (``offset`` then counts from there); ``prefix`` keeps books whose
        uuid starts with it.
        """

    @abc.abstractmethod
    def list_flows(
        self,
        *,
        limit: int | None = None,
        offset: int = 0,
        name: str | None = None,
        state: str | None = None,
        since: datetime | None = None,
        after: Cursor | None = None,
        prefix: str | None = None,
    ) -> list[tuple[str, FlowDetail]]:
        """Return (book uuid, flow without tasks) newest first; ``since``: created then or later."""

    @abc.abstractmethod
    def count_flows(
        self,
        *,
        name: str | None = None,
        state: str | None = None,
        since: datetime | None = None,
        prefix: str | None = None,
    ) -> int:
        """Count the flows matching the filters of ``list_flows``."""

    @abc.abstractmethod
    def task_time_spans(
        self, flow_uuids: Sequence[str]
    ) -> dict[str, tuple[datetime | None, datetime | None]]:
        """Return, per flow uuid, its tasks' earliest ``started_at`` and latest ``finished_at``."""

    @abc.abstractmethod
    def task_state_counts(self, book_uuids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Return, per book uuid, how many of its tasks are in each state."""

    @abc.abstractmethod
    def flow_state_counts(self, book_uuids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Return, per book uuid, how many of its flows are in each state."""

    @abc.abstractmethod
    def clear_all(self) -> None:
        """Delete every record."""

    def check(self) -> Iterator[Damage]:
        """Read every record; yield each corrupt one (uuid, where it lives, what is wrong).

        Also yields what the store's own integrity check finds (SQLite: the file).
        This default reads book by book through the contract; backends refine it.
        """
        return care.check_by_books(self)

    def purge_logbooks(self, policy: PurgePolicy, progress: care.Progress | None = None) -> int:
        """Remove the books ``policy`` allows, in batches (or count them: dry run); return how many.

        Each batch is atomic and re-checks the books it removes, so a flow resumed
        meanwhile keeps its book.  ``progress(done, total)`` follows the books looked at.
        """
        return care.purge_by_books(self, policy, progress)


class Backend(abc.ABC):
    """A configured store, safe to share across threads; ``connect()`` opens sessions."""

    #: URI schemes this class serves (the registry's built-in table reads it).
    schemes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, uri: str, **options: Any) -> None:
        self.uri = uri
        self.options = options

    @abc.abstractmethod
    def connect(self) -> Connection:
        """Open a connection (usable as a context manager)."""

    def close(self) -> None:
        """Release every resource of the backend; it cannot be used afterwards."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.safe_uri!r})"

    @property
    def safe_uri(self) -> str:
        """The URI with any password masked, for messages and logs."""
        return mask_password(self.uri)


def fenced_out(flow_uuid: str, expected: int, stored: object) -> FencedOut:
    """The error of a write made under a fence the flow has moved past."""
    return FencedOut(
        f"flow detail {flow_uuid} was taken over (fence {stored}, this engine holds "
        f"{expected}): nothing written"
    )


def _check_commit(
    details: Sequence[FlowDetail | TaskDetail],
    fence: Fence,
    new: Sequence[TaskDetail],
    release: OwnChange | None,
) -> FlowDetail | None:
    """The fenced flow's detail among ``details`` (or None); ValueError if the call is unfit."""
    flow = next((d for d in details if isinstance(d, FlowDetail) and d.uuid == fence[0]), None)
    if new and flow is None:
        raise ValueError("new task details are committed with their flow detail, which is missing")
    if release is not None and (release.kind != "release" or release.fence != fence[1]):
        raise ValueError(f"expected a release under fence {fence[1]}, not {release!r}")
    return flow
