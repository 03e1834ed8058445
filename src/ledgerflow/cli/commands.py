"""The store commands: ``books``, ``show``, ``upgrade`` and ``copy``.

``books`` and ``show`` only read: they never call ``upgrade`` and check first that
a local store exists, so looking at a missing store creates nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import click

import ledgerflow as lf
from ledgerflow import states
from ledgerflow.cli import listing, render
from ledgerflow.cli.app import EXIT_USAGE, App, fail, has_records, local_store_missing
from ledgerflow.cli.render import Text
from ledgerflow.history import (
    MAX_PAGE,
    BookSummary,
    BookView,
    Corrupt,
    FlowView,
    History,
    Page,
    TaskView,
    View,
    check_uuid,
    mask_password,
)
from ledgerflow.persistence.care import record_problems

__all__ = ["books", "copy", "show", "upgrade", "view"]

COPY_PAGE = 200
#: Books per --page when no --limit is given.
PAGE_SIZE = 20
#: Books a terminal shows without --limit or --all (newest first).
TERMINAL_PAGE = 20
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON (to_dict form).")


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


@click.command()
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    help=f"At most this many books (default: {TERMINAL_PAGE} at a terminal, all when piped).",
)
@click.option("--offset", type=click.IntRange(min=0), help="Skip this many books.")
@click.option("--page", type=click.IntRange(min=1), help="Page number (of --limit books).")
@click.option("--all", "show_all", is_flag=True, help="Every book, at a terminal too.")
@click.option(
    "--newest-first/--oldest-first",
    default=True,
    help="Order by creation time (default: newest first; --oldest-first is get_logbooks order).",
)
@click.option("--name", help="Only books with exactly this name.")
@click.option(
    "--state",
    type=click.Choice(sorted(states.FLOW_STATES), case_sensitive=False),
    help="Only books with a flow in this state.",
)
@json_option
@click.pass_obj
def books(
    app: App,
    limit: int | None,
    offset: int | None,
    page: int | None,
    show_all: bool,
    newest_first: bool,
    name: str | None,
    state: str | None,
    as_json: bool,
) -> None:
    """List logbooks, one line each, newest first, with their flows' and tasks' states."""
    if offset is not None and page is not None:
        fail("give --offset or --page, not both", EXIT_USAGE)
    if show_all and (limit is not None or page is not None):
        fail("give --all or --limit/--page, not both", EXIT_USAGE)
    interactive = render.at_a_terminal(app.out)
    if page is not None and limit is None:
        limit = PAGE_SIZE
    if limit is None and interactive and not as_json and not show_all:
        limit = TERMINAL_PAGE
    start = offset if offset is not None else ((page or 1) - 1) * (limit or 0)
    query = BookQuery(name, state.upper() if state else None, newest_first)
    if local_store_missing(app.backend_uri):
        _print_no_books(app, as_json, "does not exist yet")
        return
    with app.read() as conn:
        if not has_records(conn):
            _print_no_books(app, as_json, "holds no logbooks")
            return
        history = History(conn)
        printed = 0
        try:
            if as_json:
                found = _iter_summaries(history, query, start, limit)
                _echo_json([conn.get_logbook(item.book.uuid).to_dict() for item in found])
                return
            if not interactive:  # piped: exactly one line per book, streamed a page at a time
                for item in _iter_summaries(history, query, start, limit):
                    render.emit(app.out, [render.book_line(item)])
                    printed += 1
                if not printed:
                    total = conn.count_logbooks(name=query.name, state=query.state)
                    _print_books(app, [], start, total, limit, query, conn.count_logbooks())
                return
            first = history.books(
                limit=min(limit or MAX_PAGE, MAX_PAGE), offset=start, **query.filters()
            )
            items = first.items + list(_iter_summaries(history, query, start, limit, first))
        except lf.CorruptRecordError:  # list the rest record by record, the corrupt as such
            left = None if limit is None else limit - printed
            found_corrupt = listing.print_books_around_corruption(
                app, conn, listing.BookFilter(query.name, query.state, query.newest_first),
                start + printed, left, as_json,
            )  # fmt: skip
            fail(f"{found_corrupt} listed; run `ledgerflow check` for details")
        total = first.total or 0
        everything = conn.count_logbooks() if query.filtered and not items else total
    _print_books(app, items, start, total, limit, query, everything)


@dataclass(frozen=True)
class BookQuery:
    """The filters and order of a ``books`` listing."""

    name: str | None
    state: str | None
    newest_first: bool

    @property
    def filtered(self) -> bool:
        """Whether a filter narrows the listing."""
        return self.name is not None or self.state is not None

    def filters(self) -> dict[str, Any]:
        """Keyword arguments for ``History.books``."""
        return {"name": self.name, "state": self.state, "newest_first": self.newest_first}

    def describe(self) -> str:
        """'named X with a flow in state S', for messages."""
        parts = []
        if self.name is not None:
            parts.append(f"named {self.name!r}")
        if self.state is not None:
            parts.append(f"with a flow in state {self.state}")
        return " ".join(parts)


def _iter_summaries(
    history: History,
    query: BookQuery,
    start: int,
    limit: int | None,
    first: Page[BookSummary] | None = None,
) -> Iterator[BookSummary]:
    """Books from ``start`` (at most ``limit``), a keyset page at a time after ``first``."""
    left = limit
    cursor: str | None = None
    if first is not None:
        if left is not None:
            left -= len(first.items)
        cursor = first.next
        if cursor is None:
            return
    while left is None or left > 0:
        size = MAX_PAGE if left is None else min(left, MAX_PAGE)
        page = history.books(
            limit=size,
            after=cursor,
            offset=0 if cursor else start,
            count=False,
            **query.filters(),
        )
        yield from page.items
        if left is not None:
            left -= len(page.items)
        if page.next is None:
            return
        cursor = page.next


def _print_no_books(app: App, as_json: bool, why: str) -> None:
    if as_json:
        _echo_json([])
    else:
        app.out.print(f"no logbooks: {app.safe_uri} {why}")


def _print_books(
    app: App,
    items: list[BookSummary],
    start: int,
    total: int,
    limit: int | None,
    query: BookQuery,
    everything: int,
) -> None:
    if not items:
        if query.filtered and total == 0:
            message = f"no logbooks {query.describe()} ({_plural(everything, 'book')} in all)"
        else:
            message = f"no logbooks (of {total}) at offset {start}"
        app.out.print(f"{message} in {app.safe_uri}")
        return
    # The header and paging footer are for a person at a terminal.
    lines = [Text(render.BOOK_HEADER, style="bold")]
    lines.extend(render.book_line(item) for item in items)
    shown = start + len(items)
    footer = f"books {start + 1}-{shown} of {total}"
    if limit is not None and shown < total:
        footer += (
            f"; {total - shown} more: --page {start // limit + 2} (or --offset {shown}), or --all"
        )
    lines.append(Text(footer, style="dim"))
    render.emit(app.out, lines)


@click.command()
@click.argument("uuid")
@click.option("--verbose", "-v", is_flag=True, help="Full tracebacks, cause chains and uuids.")
@json_option
@click.pass_obj
def show(app: App, uuid: str, verbose: bool, as_json: bool) -> None:
    """Show a book, flow or task: the tree of flows and tasks, then a timeline."""
    check_uuid(uuid)
    if local_store_missing(app.backend_uri):
        fail(f"no logbook, flow or task with uuid {uuid!r}: {app.safe_uri} does not exist")
    with app.read() as conn:
        if not has_records(conn):
            fail(f"no logbook, flow or task with uuid {uuid!r}: {app.safe_uri} is empty")
        found = History(conn).record(uuid, tolerant=True)
        if as_json:
            _echo_json(found.to_dict())
        else:
            render.emit(app.out, _lines(found, verbose, app.out.width))
    listing.fail_if_corrupt(len(found.corrupt_records()))
    problems = record_problems(_record(found))
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        fail(f"{problems[0]}{more}; run `ledgerflow check`")


def view(
    conn: lf.Connection, uuid: str, verbose: bool, width: int
) -> tuple[lf.LogBook | lf.FlowDetail | lf.TaskDetail, list[Text]]:
    """Read the record ``uuid`` names (one snapshot) and render its tree and timelines.

    A corrupt record in the tree or above it is marked in its place; the rest reads on.
    """
    found = History(conn).record(uuid, tolerant=True)
    return _record(found), _lines(found, verbose, width)


def _record(found: View) -> lf.LogBook | lf.FlowDetail | lf.TaskDetail:
    """The record a view is of."""
    if isinstance(found, BookView):
        return found.book
    return found.flow if isinstance(found, FlowView) else found.task


def _lines(found: View, verbose: bool, width: int) -> list[Text]:
    """A view's tree (each corrupt record marked in its place), then its timelines."""
    if isinstance(found, BookView):
        lines = render.book_tree(found, verbose)
        timed = found.book.flows
    elif isinstance(found, FlowView):
        lines = [
            render.book_header(found.book),
            *render.flow_tree(found.flow, "└── ", "    ", verbose, found.corrupt),
        ]
        timed = [found.flow]
    else:
        lines = _task_view(found)
        timed = []
    now = datetime.now(UTC)
    for flow in timed:
        bars = render.timeline(flow.tasks, width, now)
        if bars:
            lines.extend([Text(""), *bars])
    return lines


def _task_view(found: TaskView) -> list[Text]:
    """A task with its book and flow above it, and everything it recorded."""
    task = found.task
    flow = found.flow
    above = (
        render.corrupt_text(flow.message, "└── flow ")
        if isinstance(flow, Corrupt)
        else render.flow_line(flow, "└── ", with_tasks=False)
    )
    lines = [render.book_header(found.book), above]
    lines.extend(render.task_lines(task, "    └── ", "        ", verbose=True))
    details = {
        "version": task.version,
        "started": render.format_time(task.started_at),
        "finished": render.format_time(task.finished_at),
        "result": render.preview(task.result, 2000),
        "checkpoint": render.preview(task.checkpoint, 2000),
        "meta": render.preview(task.meta, 2000),
    }
    lines.extend(Text(f"        {key}: {value}", style="dim") for key, value in details.items())
    return lines


@click.command()
@click.pass_obj
def upgrade(app: App) -> None:
    """Create or migrate the store's schema to this version of ledgerflow."""
    with app.connect() as conn:
        conn.upgrade()
    app.out.print(f"{app.safe_uri}: schema is up to date")


@click.command()
@click.argument("src_uri", metavar="SRC_URI")
@click.argument("dst_uri", metavar="DST_URI")
@click.pass_obj
def copy(app: App, src_uri: str, dst_uri: str) -> None:
    """Copy every book from SRC_URI to DST_URI; the source wins, a re-run changes nothing."""
    if src_uri == dst_uri:
        fail("SRC_URI and DST_URI are the same store", EXIT_USAGE)
    if local_store_missing(src_uri):
        fail(f"source store {mask_password(src_uri)} does not exist")
    with app.connect(src_uri) as src, app.connect(dst_uri) as dst:
        from rich.progress import (  # only copy shows progress: keep reading commands light
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        has_records(src)
        dst.upgrade()
        total = src.count_logbooks()
        written = unchanged = 0
        with Progress(
            TextColumn("copying books"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=app.err,
            transient=True,
        ) as progress:
            bar = progress.add_task("copy", total=total)
            for book in _iter_books(src):
                if copy_book(book, dst):
                    written += 1
                else:
                    unchanged += 1
                progress.advance(bar)
    app.out.print(
        f"copied {_plural(written + unchanged, 'book')} from {mask_password(src_uri)} to "
        f"{mask_password(dst_uri)}: {written} written, {unchanged} already identical"
    )


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _iter_books(src: lf.Connection) -> Iterator[lf.LogBook]:
    """Every book with its details, oldest first, a page at a time."""
    offset = 0
    while True:
        page = src.list_logbooks(limit=COPY_PAGE, offset=offset)
        for summary in page:
            yield src.get_logbook(summary.uuid)
        if len(page) < COPY_PAGE:
            return
        offset += COPY_PAGE


def copy_book(book: lf.LogBook, dst: lf.Connection) -> bool:
    """Write ``book`` to ``dst`` unless it already holds an identical copy; True if written."""
    try:
        existing = dst.get_logbook(book.uuid)
    except lf.NotFound:
        existing = None
    if existing is not None and _same(book, existing):
        return False
    # Revision 0 means "never stored": an unconditional write, so the source wins
    # over whatever revision the destination holds.
    book.revision = 0
    for flow in book:
        flow.revision = 0
        for task in flow:
            task.revision = 0
    dst.save_logbook(book)
    return True


def _fields(record: lf.LogBook | lf.FlowDetail | lf.TaskDetail) -> dict[str, Any]:
    data = record.to_dict()
    for key in ("revision", "flows", "tasks"):
        data.pop(key, None)
    return data


def _same(src: lf.LogBook, dst: lf.LogBook) -> bool:
    """Whether ``dst`` already holds every field (but revision) of ``src`` and its details."""
    if _fields(src) != _fields(dst):
        return False
    for flow in src:
        other = dst.find(flow.uuid)
        if other is None or _fields(flow) != _fields(other):
            return False
        for task in flow:
            stored = other.find(task.uuid)
            if stored is None or _fields(task) != _fields(stored):
                return False
    return True
