"""``RecordConnection``: the whole ``Connection`` contract on a handful of row primitives.

A new backend subclasses it and writes only the primitives (see ``base`` for the list
and for what revisions mean); everything public is built here on top of them.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from ledgerflow.errors import ConflictError, NotFound
from ledgerflow.models import FlowDetail, LogBook, TaskDetail, utcnow
from ledgerflow.persistence import care, ownership, records
from ledgerflow.persistence.base import Connection, Fence, RecordRef, _check_commit, fenced_out
from ledgerflow.persistence.care import Damage, PurgePolicy
from ledgerflow.persistence.listing import (
    Cursor,
    Listings,
    check_cursor,
    check_paging,
    given,
)
from ledgerflow.persistence.ownership import OwnChange, Ownership
from ledgerflow.persistence.records import Kind, Row

__all__ = ["RecordConnection"]


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class RecordConnection(Listings, Connection):
    """The whole contract built on row primitives; subclasses implement only those."""

    #: How many uuids one ``_fetch`` may receive (SQL IN-list limits).
    fetch_chunk: ClassVar[int] = 900

    # ---- primitives -------------------------------------------------------------
    @abc.abstractmethod
    def _transaction(self) -> contextlib.AbstractContextManager[None]:
        """Context in which all writes commit together or not at all; may nest."""

    @abc.abstractmethod
    def _fetch(
        self, kind: Kind, *, uuids: Sequence[str] = (), parents: Sequence[str] = ()
    ) -> list[Row]:
        """Rows with these uuids, or whose parent is one of ``parents``, insertion order."""

    def _snapshot(self) -> contextlib.AbstractContextManager[None]:
        """Context in which successive reads see the store as of one moment.

        A book is read in several queries (book, flows, tasks); without this a write
        committed in between could hand back a flow with half its tasks, or a book whose
        flows were deleted.  The default suits a store that is never shared.
        """
        return contextlib.nullcontext()

    @abc.abstractmethod
    def _list_books(
        self,
        *,
        limit: int | None,
        offset: int,
        name: str | None,
        state: str | None,
        newest_first: bool,
        count_only: bool = False,
        after: Cursor | None = None,
        prefix: str | None = None,
    ) -> list[Row] | int:
        """Book rows ordered by (created_at, uuid) (or reversed), or their count.

        ``after``: only rows past that key in the chosen order; ``prefix``: uuid prefix.
        """

    @abc.abstractmethod
    def _insert(self, kind: Kind, rows: Sequence[Row]) -> None:
        """Insert new rows (revision already set); ConflictError if one exists."""

    @abc.abstractmethod
    def _update(self, kind: Kind, row: Row, expected_revision: int | None) -> int:
        """Overwrite a stored row's fields (not its parent) and return its new revision.

        With ``expected_revision`` the write happens only if the stored revision equals
        it (in the same statement) else ConflictError; NotFound if the row is missing.
        """

    @abc.abstractmethod
    def _delete_book(self, uuid: str) -> bool:
        """Delete a book and everything under it; False if there was no such book."""

    def _delete_tasks(self, flow_uuid: str, uuids: Sequence[str]) -> None:
        """Delete these task rows of flow ``flow_uuid`` (all stored), inside ``_transaction``."""
        raise NotImplementedError(f"{type(self).__name__} cannot delete task details")

    @abc.abstractmethod
    def _clear(self) -> None:
        """Delete every row."""

    def _scan(self, kind: Kind) -> Iterator[care.ScanItem]:
        """Every stored row of ``kind`` as ``(where, row, problem)``; ``check`` decodes the rows.

        ``row`` is None (and ``problem`` says why) for what could not even be read.  This
        default walks books, then flows and tasks through their parents; backends that can
        tell which row is broken (SQL: the table row; files: the file) override it.
        """
        return care.scan_by_parents(self, kind)

    def _check_store(self) -> Iterator[Damage]:
        """What the store's own integrity check finds (default: nothing to check)."""
        return iter(())

    def check(self) -> Iterator[Damage]:
        """Read every record; yield each corrupt one (uuid, where it lives, what is wrong)."""
        return care.check_rows(self)

    def purge_logbooks(self, policy: PurgePolicy, progress: care.Progress | None = None) -> int:
        """Remove the books ``policy`` allows, a batch per transaction; return how many."""
        return care.purge_rows(self, policy, progress)

    def _task_state_counts(self, book_uuids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Default: count from fetched rows; SQL overrides with a GROUP BY."""
        counts: dict[str, dict[str, int]] = {uuid: {} for uuid in book_uuids}
        flows = self._fetch_many("flow", parents=list(book_uuids))
        book_of = {row["uuid"]: row["book_uuid"] for row in flows}
        for row in self._fetch_many("task", parents=list(book_of)):
            per_state = counts[book_of[row["flow_uuid"]]]
            per_state[row["state"]] = per_state.get(row["state"], 0) + 1
        return counts

    # ---- helpers ----------------------------------------------------------------
    def _fetch_many(
        self, kind: Kind, *, uuids: Sequence[str] = (), parents: Sequence[str] = ()
    ) -> list[Row]:
        keys, by_parent = (parents, True) if parents else (uuids, False)
        if not keys:
            return []
        if len(keys) <= self.fetch_chunk:
            return self._fetch(kind, parents=keys) if by_parent else self._fetch(kind, uuids=keys)
        rows: list[Row] = []
        for chunk in _chunks(keys, self.fetch_chunk):
            rows.extend(
                self._fetch(kind, parents=chunk) if by_parent else self._fetch(kind, uuids=chunk)
            )
        return rows

    def _child_keys(self, kind: Kind, parents: Sequence[str]) -> list[tuple[str, str]]:
        """(parent uuid, uuid) of the ``kind`` rows under ``parents``, in insertion order.

        For reading around a corrupt row: the built-in stores read only these keys, so a
        row that does not decode is still named; this default fetches whole rows.
        """
        key = records.PARENT_KEY[kind]
        assert key is not None
        return [(row[key], row["uuid"]) for row in self._fetch_many(kind, parents=parents)]

    def _one(self, kind: Kind, uuid: str, what: str) -> Row:
        records.check_uuid(uuid, f"{what} uuid")
        rows = self._fetch(kind, uuids=[uuid])
        if not rows:
            raise NotFound(f"no {what} with uuid {uuid!r}")
        return rows[0]

    def _attach_tasks(self, flows: Sequence[FlowDetail]) -> None:
        by_uuid = {flow.uuid: flow for flow in flows}
        for row in self._fetch_many("task", parents=list(by_uuid)):
            by_uuid[row["flow_uuid"]].add(records.row_to_task(row))

    def _books_with_details(self, book_rows: Sequence[Row], lazy: bool) -> list[LogBook]:
        books = {row["uuid"]: records.row_to_book(row) for row in book_rows}
        if not lazy and books:
            flows = []
            for row in self._fetch_many("flow", parents=list(books)):
                flow = records.row_to_flow(row)
                books[row["book_uuid"]].add(flow)
                flows.append(flow)
            self._attach_tasks(flows)
        return list(books.values())

    # ---- the contract -----------------------------------------------------------
    def snapshot(self) -> contextlib.AbstractContextManager[None]:
        """Context in which successive reads see the store as of one moment (may nest)."""
        return self._snapshot()

    def save_logbook(self, book: LogBook) -> LogBook:
        """Insert or merge ``book`` with all its details atomically; return it, revisions bumped."""
        batches: list[tuple[Kind, list[Row]]] = [
            ("book", [records.book_to_row(book)]),
            ("flow", [records.flow_to_row(flow, book.uuid) for flow in book]),
            ("task", [records.task_to_row(task, flow.uuid) for flow in book for task in flow]),
        ]
        new_revisions: list[int] = []
        with self._transaction():
            for kind, rows in batches:
                uuids = [row["uuid"] for row in rows]
                stored = {row["uuid"]: row for row in self._fetch_many(kind, uuids=uuids)}
                _check_parents(kind, rows, stored)
                new = [{**row, "revision": 1} for row in rows if row["uuid"] not in stored]
                if new:
                    self._insert(kind, new)
                new_revisions.extend(
                    self._update(kind, row, row["revision"] or None) if row["uuid"] in stored else 1
                    for row in rows
                )
        objects: list[Any] = [book, *book, *(task for flow in book for task in flow)]
        for obj, revision in zip(objects, new_revisions, strict=True):
            obj.revision = revision
        return book

    def insert_logbook(self, book: LogBook) -> LogBook:
        """Insert a new ``book`` with all its details atomically; ConflictError if one is stored.

        ``save_logbook`` without the look-ups that merging needs: for a book just made
        (fresh uuids), e.g. a job's, whose post it is.
        """
        batches: list[tuple[Kind, list[Row]]] = [
            ("book", [records.book_to_row(book)]),
            ("flow", [records.flow_to_row(flow, book.uuid) for flow in book]),
            ("task", [records.task_to_row(task, flow.uuid) for flow in book for task in flow]),
        ]
        with self._transaction():
            for kind, rows in batches:
                if rows:
                    self._insert(kind, [{**row, "revision": 1} for row in rows])
        for obj in (book, *book, *(task for flow in book for task in flow)):
            obj.revision = 1
        return book

    def get_logbook(self, uuid: str, lazy: bool = False) -> LogBook:
        """Return the book (with flows and tasks unless ``lazy``); NotFound if unknown."""
        with self._snapshot():
            return self._books_with_details([self._one("book", uuid, "logbook")], lazy)[0]

    def get_logbooks(
        self,
        *,
        limit: int | None = None,
        offset: int = 0,
        name: str | None = None,
        lazy: bool = False,
    ) -> list[LogBook]:
        """Return books ordered by (created_at, uuid), paged and filtered by exact name."""
        check_paging(limit, offset)
        with self._snapshot():
            rows = self._list_books(
                limit=limit, offset=offset, name=name, state=None, newest_first=False
            )
            assert isinstance(rows, list)
            return self._books_with_details(rows, lazy)

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
        """Return books without details; ``state`` keeps books with a flow in that state."""
        check_paging(limit, offset)
        # Only a filter that is set reaches the primitive: third-party backends written
        # before keyset paging keep working for everything they support.
        extra = given(after=check_cursor(after), prefix=prefix)
        rows = self._list_books(
            limit=limit, offset=offset, name=name, state=state, newest_first=newest_first, **extra
        )
        assert isinstance(rows, list)
        return [records.row_to_book(row) for row in rows]

    def count_logbooks(
        self, *, name: str | None = None, state: str | None = None, prefix: str | None = None
    ) -> int:
        """Count the books matching the filters of ``list_logbooks``."""
        count = self._list_books(
            limit=None,
            offset=0,
            name=name,
            state=state,
            newest_first=False,
            count_only=True,
            **given(prefix=prefix),
        )
        assert isinstance(count, int)
        return count

    def task_state_counts(self, book_uuids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Return, per book uuid, how many of its tasks are in each state."""
        return self._task_state_counts(list(book_uuids))

    def destroy_logbook(self, uuid: str) -> None:
        """Delete a book with its flow and task details; NotFound if unknown."""
        records.check_uuid(uuid, "logbook uuid")
        with self._transaction():
            if not self._delete_book(uuid):
                raise NotFound(f"no logbook with uuid {uuid!r}")

    def destroy_task_details(self, flow_uuid: str, task_uuids: Sequence[str]) -> None:
        """Delete these task details of flow ``flow_uuid`` together; NotFound if one is unknown."""
        records.check_uuid(flow_uuid, "flow detail uuid")
        uuids = [records.check_uuid(uuid, "task detail uuid") for uuid in task_uuids]
        with self._transaction():
            stored = {row["uuid"]: row for row in self._fetch("task", uuids=uuids)}
            for uuid in uuids:
                if stored.get(uuid, {}).get("flow_uuid") != flow_uuid:
                    raise NotFound(f"no task detail with uuid {uuid!r} in flow {flow_uuid!r}")
            if uuids:
                self._delete_tasks(flow_uuid, uuids)

    def update_flow_details(
        self, flow_detail: FlowDetail, *, fence: Fence | None = None
    ) -> FlowDetail:
        """Write the flow record and insert its task details not stored yet; return it."""
        row = records.flow_to_row(flow_detail, None)
        task_rows = {td.uuid: records.task_to_row(td, flow_detail.uuid) for td in flow_detail}
        with self._transaction():
            if fence is not None:
                self._fence(fence)
            revision = self._update("flow", row, flow_detail.revision or None)
            stored = {r["uuid"] for r in self._fetch_many("task", uuids=list(task_rows))}
            new = [{**r, "revision": 1} for uuid, r in task_rows.items() if uuid not in stored]
            if new:
                self._insert("task", new)
        flow_detail.revision = revision
        for td in flow_detail:
            if td.uuid not in stored:
                td.revision = 1
        return flow_detail

    def update_task_details(self, task_detail: TaskDetail) -> TaskDetail:
        """Write a stored task record; NotFound unless it was saved before; return it."""
        row = records.task_to_row(task_detail, None)
        with self._transaction():
            revision = self._update("task", row, task_detail.revision or None)
        # Only now: a backend may commit (and fail) when the transaction closes.
        task_detail.revision = revision
        return task_detail

    def update_details(self, *details: FlowDetail | TaskDetail, fence: Fence | None = None) -> None:
        """Write several stored flow/task records in one transaction (all or nothing)."""
        rows = self._detail_rows(details)
        with self._transaction():
            if fence is not None:
                self._fence(fence)
            revisions = [self._update(kind, row, row["revision"] or None) for kind, row in rows]
        for detail, revision in zip(details, revisions, strict=True):
            detail.revision = revision

    def commit_details(
        self,
        *details: FlowDetail | TaskDetail,
        fence: Fence,
        new: Sequence[TaskDetail] = (),
        release: OwnChange | None = None,
    ) -> None:
        """``update_details`` under ``fence``, ``new`` inserted, ``release`` applied, atomically."""
        flow = _check_commit(details, fence, new, release)
        rows = self._detail_rows(details)
        inserts = [{**records.task_to_row(td, fence[0]), "revision": 1} for td in new]
        with self._transaction():
            self._fence(fence)
            revisions = [
                self._update_releasing(row, row["revision"] or None, release)
                if release is not None and detail is flow
                else self._update(kind, row, row["revision"] or None)
                for detail, (kind, row) in zip(details, rows, strict=True)
            ]
            if inserts:
                self._insert("task", inserts)
            if release is not None and flow is None:
                self._release(fence[0], release)
        for detail, revision in zip(details, revisions, strict=True):
            detail.revision = revision
        for task_detail in new:
            task_detail.revision = 1

    def _update_releasing(self, row: Row, expected_revision: int | None, release: OwnChange) -> int:
        """``_update`` of the fenced flow's row and ``release`` of it (inside ``_transaction``).

        The default makes them two writes of one transaction; a SQL store folds the
        release into the UPDATE.
        """
        revision = self._update("flow", row, expected_revision)
        self._release(row["uuid"], release)
        return revision

    def _release(self, flow_uuid: str, release: OwnChange) -> None:
        """Apply ``release`` inside ``_transaction``; FencedOut if its fence no longer holds."""
        if not self.change_ownership(flow_uuid, release):
            raise fenced_out(flow_uuid, release.fence, self.get_ownership(flow_uuid).fence)

    def _fence(self, fence: Fence) -> None:
        """Make the current transaction's writes land only under ``fence``; FencedOut if not.

        The default checks the flow row once, which is enough for a store whose
        transaction excludes every other writer (memory, files); a SQL store puts the
        check into each UPDATE instead.
        """
        flow_uuid, expected = fence
        rows = self._fetch("flow", uuids=[flow_uuid])
        if not rows:
            raise NotFound(f"no flow detail with uuid {flow_uuid!r}")
        if rows[0]["fence"] != expected:
            raise fenced_out(flow_uuid, expected, rows[0]["fence"])

    def get_ownership(self, flow_uuid: str) -> Ownership:
        """Return the flow's owner, fence, lease and pending request; NotFound if unknown."""
        row = self._one("flow", flow_uuid, "flow detail")
        return _ownership_of(row, utcnow())

    def change_ownership(self, flow_uuid: str, change: OwnChange) -> bool:
        """Apply one compare-and-set of ``ownership`` to the flow; False if it did not hold."""
        records.check_uuid(flow_uuid, "flow detail uuid")
        with self._transaction():
            rows = self._fetch("flow", uuids=[flow_uuid])
            if not rows:
                raise NotFound(f"no flow detail with uuid {flow_uuid!r}")
            now = utcnow()
            if not ownership.allowed(change, rows[0], now):
                return False
            self._put_ownership(flow_uuid, ownership.changes(change, rows[0], now))
        return True

    def _put_ownership(self, flow_uuid: str, values: dict[str, Any]) -> None:
        """Overwrite some ownership columns of a stored flow row (inside ``_transaction``)."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement _put_ownership or change_ownership"
        )

    @staticmethod
    def _detail_rows(details: Sequence[FlowDetail | TaskDetail]) -> list[tuple[Kind, Row]]:
        """Encode details for ``update_details`` (all of them, before anything is written)."""
        return [
            ("task", records.task_to_row(d, None))
            if isinstance(d, TaskDetail)
            else ("flow", records.flow_to_row(d, None))
            for d in details
        ]

    def get_flow_details(self, uuid: str, lazy: bool = False) -> FlowDetail:
        """Return the flow detail (with its tasks unless ``lazy``); NotFound if unknown."""
        if lazy:  # one row, one query: no snapshot to open
            return records.row_to_flow(self._one("flow", uuid, "flow detail"))
        with self._snapshot():
            flow = records.row_to_flow(self._one("flow", uuid, "flow detail"))
            if not lazy:
                self._attach_tasks([flow])
        return flow

    def get_task_details(self, uuid: str) -> TaskDetail:
        """Return the task detail; NotFound if unknown."""
        return records.row_to_task(self._one("task", uuid, "task detail"))

    def get_flows_for_book(self, book_uuid: str) -> list[FlowDetail]:
        """Return the book's flow details, each with its tasks; NotFound if no such book."""
        with self._snapshot():
            self._one("book", book_uuid, "logbook")
            rows = self._fetch("flow", parents=[book_uuid])
            flows = [records.row_to_flow(row) for row in rows]
            self._attach_tasks(flows)
        return flows

    def get_tasks_for_flow(self, flow_uuid: str) -> list[TaskDetail]:
        """Return the flow's task details in order; NotFound if no such flow."""
        with self._snapshot():
            self._one("flow", flow_uuid, "flow detail")
            rows = self._fetch("task", parents=[flow_uuid])
        return [records.row_to_task(row) for row in rows]

    def locate(self, uuid: str) -> RecordRef:
        """Tell whether ``uuid`` is a book, flow or task and where it lives; NotFound."""
        records.check_uuid(uuid)
        with self._snapshot():
            return self._locate(uuid)

    def _locate(self, uuid: str) -> RecordRef:
        if self._fetch("book", uuids=[uuid]):
            return RecordRef("book", uuid, uuid, None)
        flows = self._fetch("flow", uuids=[uuid])
        if flows:
            return RecordRef("flow", uuid, flows[0]["book_uuid"], uuid)
        tasks = self._fetch("task", uuids=[uuid])
        if tasks:
            flow_uuid = tasks[0]["flow_uuid"]
            parent = self._fetch("flow", uuids=[flow_uuid])
            return RecordRef("task", uuid, parent[0]["book_uuid"] if parent else None, flow_uuid)
        raise NotFound(f"no logbook, flow detail or task detail with uuid {uuid!r}")

    def clear_all(self) -> None:
        """Delete every record."""
        with self._transaction():
            self._clear()


def _ownership_of(row: Row, now: Any) -> Ownership:
    return Ownership(
        flow_uuid=row["uuid"],
        state=row["state"],
        owner=row["owner"],
        fence=row["fence"],
        lease_expires_at=row["lease_expires_at"],
        request=row["request"],
        now=now,
    )


def _check_parents(kind: Kind, rows: Sequence[Row], stored: dict[str, Row]) -> None:
    """Refuse to move a stored flow or task under another parent."""
    key = records.PARENT_KEY[kind]
    if key is None:
        return
    for row in rows:
        old = stored.get(row["uuid"])
        if old is not None and old[key] != row[key]:
            raise ConflictError(
                f"{kind} detail {row['uuid']} belongs to {old[key]}, not to {row[key]}"
            )
