"""Listings that show a corrupt record as such and still list the others (API.md, Store care).

A page that fails to load because one record in it is corrupt is split in halves
until the corrupt record stands alone (``history.robust_page``), so one bad record
costs a few more queries, not a listing.  Each corrupt entry is the
``CorruptRecordError`` naming it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import click

import ledgerflow as lf
from ledgerflow.cli import render
from ledgerflow.cli.render import Text
from ledgerflow.history import (
    MAX_PAGE,
    BookSummary,
    Corrupt,
    FlowSummary,
    History,
    per_item,
    robust_page,
)

if TYPE_CHECKING:
    from ledgerflow.cli.app import App

__all__ = [
    "BookFilter",
    "corrupt_line",
    "entry_json",
    "entry_line",
    "fail_if_corrupt",
    "flows_around_corruption",
    "per_item",
    "print_books_around_corruption",
    "robust_page",
]

T = TypeVar("T")
U = TypeVar("U")


@dataclass(frozen=True)
class BookFilter:
    """What a ``books`` listing selects, in its order."""

    name: str | None
    state: str | None
    newest_first: bool


def print_books_around_corruption(
    app: App, conn: lf.Connection, query: BookFilter, start: int, limit: int | None, as_json: bool
) -> str:
    """Print the books from ``start`` with each corrupt record shown as such; say how many."""
    total = conn.count_logbooks(name=query.name, state=query.state)

    def fetch(offset: int, count: int | None) -> list[lf.LogBook]:
        return conn.list_logbooks(
            limit=count,
            offset=offset,
            name=query.name,
            state=query.state,
            newest_first=query.newest_first,
        )

    entries = robust_page(fetch, start, limit, total)
    good = [entry.uuid for entry in entries if isinstance(entry, lf.LogBook)]
    if as_json:
        items = [_book_json(conn, entry) for entry in entries]
        click.echo(json.dumps(items, indent=2, ensure_ascii=False))
        corrupt = sum("corrupt" in item for item in items)
    else:
        flows = per_item(conn.flow_state_counts, good)
        tasks = per_item(conn.task_state_counts, good)
        lines = [_line(entry, flows, tasks) for entry in entries]
        render.emit(app.out, lines)
        corrupt = sum("CORRUPT" in line.plain for line in lines)
    return f"{corrupt} corrupt record" + (" is" if corrupt == 1 else "s are")


def _line(
    entry: lf.LogBook | lf.CorruptRecordError,
    flows: dict[str, dict[str, int] | lf.CorruptRecordError],
    tasks: dict[str, dict[str, int] | lf.CorruptRecordError],
) -> Text:
    if isinstance(entry, lf.CorruptRecordError):
        return corrupt_line(entry)
    flow_states, task_states = flows.get(entry.uuid, {}), tasks.get(entry.uuid, {})
    for counts in (flow_states, task_states):
        if isinstance(counts, lf.CorruptRecordError):
            return render.book_line(BookSummary(entry, {}, {}, corrupt=Corrupt(counts)))
    assert not isinstance(flow_states, Exception) and not isinstance(task_states, Exception)
    return render.book_line(BookSummary(entry, flow_states, task_states))


def _book_json(conn: lf.Connection, entry: lf.LogBook | lf.CorruptRecordError) -> dict[str, Any]:
    """A book's to_dict(), or what is known of it and why it is corrupt."""
    if isinstance(entry, lf.CorruptRecordError):
        return {"corrupt": str(entry)}
    try:
        return conn.get_logbook(entry.uuid).to_dict()
    except lf.CorruptRecordError as exc:
        return {"uuid": entry.uuid, "name": entry.name, "corrupt": str(exc)}


def flows_around_corruption(
    history: History, total: int, limit: int | None, filters: dict[str, Any]
) -> list[FlowSummary | lf.CorruptRecordError]:
    """The flows ``ledgerflow flows`` lists, newest first, each corrupt one as its error."""
    wanted = total if limit is None else min(limit, total)

    def fetch(offset: int, count: int | None) -> list[FlowSummary]:
        page = history.flows(
            limit=count or MAX_PAGE, offset=offset, count=False, peek=False, **filters
        )
        return page.items

    found: list[FlowSummary | lf.CorruptRecordError] = []
    for start in range(0, wanted, MAX_PAGE):
        found.extend(robust_page(fetch, start, min(MAX_PAGE, wanted - start), total))
    return found


def entry_json(item: FlowSummary | lf.CorruptRecordError) -> dict[str, Any]:
    """A listed flow's JSON, or why it is corrupt."""
    return {"corrupt": str(item)} if isinstance(item, lf.CorruptRecordError) else item.to_dict()


def entry_line(item: T | lf.CorruptRecordError, line: Callable[[T], Text]) -> Text:
    """``line(item)``, or the corrupt line for a record that does not load."""
    return corrupt_line(item) if isinstance(item, lf.CorruptRecordError) else line(item)


def corrupt_line(error: lf.CorruptRecordError) -> Text:
    """A listing's line for a record that does not load."""
    return render.corrupt_text(str(error))


def fail_if_corrupt(count: int) -> None:
    """Exit 1 with one line when a listing showed corrupt records."""
    if count:
        from ledgerflow.cli.app import fail

        noun = "corrupt record is" if count == 1 else "corrupt records are"
        fail(f"{count} {noun} listed; run `ledgerflow check` for details")
