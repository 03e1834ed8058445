"""Listing flows and pages of records, built on the row primitives of ``base``.

``Listings`` is mixed into ``RecordConnection``: it gives every backend
``list_flows``/``count_flows``, ``task_time_spans`` and ``flow_state_counts`` with
defaults that read rows (a backend that can ask its store directly, like SQL,
overrides the ``_``-primitives).  ``page_rows`` does in-process what SQL does with
WHERE/ORDER BY/LIMIT, for backends that list by reading every row.  Such a
backend hands a record that does not read as a ``DamagedRow``: it is counted and
placed like the others, and a page holding it raises its error, so the read model
lists around it a page at a time (``ledgerflow.corrupt.robust_page``).
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from ledgerflow.errors import CorruptRecordError
from ledgerflow.models import FlowDetail
from ledgerflow.persistence import records
from ledgerflow.persistence.records import Kind, Row

__all__ = [
    "Cursor",
    "DamagedRow",
    "Listings",
    "check_cursor",
    "check_paging",
    "given",
    "page_rows",
    "select_rows",
]

#: A keyset position: the (created_at, uuid) of the last record of the previous page.
Cursor = tuple[datetime, str]


class DamagedRow(dict[str, Any]):
    """What is known of a record that does not read: what a listing filters and orders by.

    It holds ``uuid`` and ``created_at`` (stand-ins when the record lost them) and
    whichever of ``name``, ``state`` and its parent's uuid could still be read;
    ``error`` names the record and why it does not load.
    """

    def __init__(self, error: CorruptRecordError, known: dict[str, Any]) -> None:
        super().__init__(known)
        self.error = error


def page_rows(
    rows: Iterable[Row],
    *,
    limit: int | None,
    offset: int,
    newest_first: bool,
    after: Cursor | None = None,
    prefix: str | None = None,
) -> list[Row]:
    """Order rows by (created_at, uuid), keep those past ``after`` and with ``prefix``, page.

    The in-process version of what SQL does with WHERE/ORDER BY/LIMIT, for backends
    that list by reading every row.  A page holding a ``DamagedRow`` raises its error.
    """
    kept = select_rows(rows, newest_first=newest_first, after=after, prefix=prefix)
    end = None if limit is None else offset + limit
    page = kept[offset:end]
    for row in page:
        if isinstance(row, DamagedRow):
            raise row.error
    return page


def select_rows(
    rows: Iterable[Row],
    *,
    newest_first: bool,
    after: Cursor | None = None,
    prefix: str | None = None,
) -> list[Row]:
    """The rows ``page_rows`` pages, all of them (``DamagedRow``s kept, in their place)."""
    kept = [row for row in rows if prefix is None or row["uuid"].startswith(prefix)]
    if after is not None:
        kept = [
            row
            for row in kept
            if ((row["created_at"], row["uuid"]) < after)
            == newest_first  # past the cursor in the chosen direction
            and (row["created_at"], row["uuid"]) != after
        ]
    kept.sort(key=lambda row: (row["created_at"], row["uuid"]), reverse=newest_first)
    return kept


class Listings(abc.ABC):
    """Flow listings and per-flow/per-book aggregates on top of the row primitives."""

    # ---- what the mixin needs of its connection ---------------------------------
    @abc.abstractmethod
    def _snapshot(self) -> contextlib.AbstractContextManager[None]:
        """See ``RecordConnection._snapshot``."""

    @abc.abstractmethod
    def _fetch_many(
        self, kind: Kind, *, uuids: Sequence[str] = (), parents: Sequence[str] = ()
    ) -> list[Row]:
        """See ``RecordConnection._fetch_many``."""

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
        """See ``RecordConnection._list_books``."""

    # ---- primitives with defaults -----------------------------------------------
    def _list_flows(
        self,
        *,
        limit: int | None,
        offset: int,
        name: str | None,
        state: str | None,
        since: datetime | None,
        after: Cursor | None,
        prefix: str | None,
        count_only: bool = False,
    ) -> list[Row] | int:
        """Flow rows newest first by (created_at, uuid), or their count.

        The default reads every book's flows (``_flow_rows``); SQL backends override it
        with one query.  A ``DamagedRow`` matches no filter it lacks the value of.
        """
        flows = [
            row
            for row in self._flow_rows()
            if (name is None or row.get("name") == name)
            and (state is None or row.get("state") == state)
            and (since is None or row["created_at"] >= since)
        ]
        if count_only:
            return len(select_rows(flows, newest_first=True, prefix=prefix))
        return page_rows(
            flows, limit=limit, offset=offset, newest_first=True, after=after, prefix=prefix
        )

    def _flow_rows(self) -> list[Row]:
        """Every flow row, for the default ``_list_flows`` (a backend may add ``DamagedRow``s)."""
        with self._snapshot():
            books = self._list_books(
                limit=None, offset=0, name=None, state=None, newest_first=False
            )
            assert isinstance(books, list)
            return self._fetch_many("flow", parents=[row["uuid"] for row in books])

    def _flow_state_counts(self, book_uuids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Default: count from fetched flow rows; SQL overrides with a GROUP BY."""
        counts: dict[str, dict[str, int]] = {uuid: {} for uuid in book_uuids}
        for row in self._fetch_many("flow", parents=list(book_uuids)):
            per_state = counts[row["book_uuid"]]
            per_state[row["state"]] = per_state.get(row["state"], 0) + 1
        return counts

    def _task_time_spans(
        self, flow_uuids: Sequence[str]
    ) -> dict[str, tuple[datetime | None, datetime | None]]:
        """Default: from fetched task rows; SQL overrides with a GROUP BY."""
        spans: dict[str, tuple[datetime | None, datetime | None]] = {}
        for row in self._fetch_many("task", parents=list(flow_uuids)):
            first, last = spans.get(row["flow_uuid"], (None, None))
            started, finished = row["started_at"], row["finished_at"]
            if started is not None and (first is None or started < first):
                first = started
            if finished is not None and (last is None or finished > last):
                last = finished
            spans[row["flow_uuid"]] = (first, last)
        return spans

    # ---- the contract -----------------------------------------------------------
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
        check_paging(limit, offset)
        rows = self._list_flows(
            limit=limit,
            offset=offset,
            name=name,
            state=state,
            since=since,
            after=check_cursor(after),
            prefix=prefix,
        )
        assert isinstance(rows, list)
        return [(row["book_uuid"], records.row_to_flow(row)) for row in rows]

    def count_flows(
        self,
        *,
        name: str | None = None,
        state: str | None = None,
        since: datetime | None = None,
        prefix: str | None = None,
    ) -> int:
        """Count the flows matching the filters of ``list_flows``."""
        count = self._list_flows(
            limit=None,
            offset=0,
            name=name,
            state=state,
            since=since,
            after=None,
            prefix=prefix,
            count_only=True,
        )
        assert isinstance(count, int)
        return count

    def task_time_spans(
        self, flow_uuids: Sequence[str]
    ) -> dict[str, tuple[datetime | None, datetime | None]]:
        """Return, per flow uuid, its tasks' earliest ``started_at`` and latest ``finished_at``."""
        return self._task_time_spans(list(flow_uuids))

    def flow_state_counts(self, book_uuids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Return, per book uuid, how many of its flows are in each state."""
        return self._flow_state_counts(list(book_uuids))


def given(**filters: Any) -> dict[str, Any]:
    """The filters that are set (not None), as keyword arguments."""
    return {key: value for key, value in filters.items() if value is not None}


def check_cursor(after: Cursor | None) -> Cursor | None:
    """``after`` if it is an (aware datetime, str) pair (or None), else ValueError."""
    if after is None:
        return None
    if (
        not isinstance(after, tuple)
        or len(after) != 2
        or not isinstance(after[0], datetime)
        or after[0].tzinfo is None
        or not isinstance(after[1], str)
    ):
        raise ValueError(f"after must be an (aware created_at, uuid) pair, not {after!r}")
    return after


def check_paging(limit: int | None, offset: int) -> None:
    """Refuse a negative or non-integer limit or offset (ValueError naming it)."""
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative integer or None, not {limit!r}")
    if not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset must be a non-negative integer, not {offset!r}")
