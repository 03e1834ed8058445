"""The store commands: ``books``, ``show``, ``upgrade`` and ``copy``.

``books`` and ``show`` only read: they never call ``upgrade`` and check first that
a local store exists, so looking at a missing store creates nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import ledgerflow as lf
from ledgerflow import states
from ledgerflow.cli import listing, render
from ledgerflow.cli.app import EXIT_USAGE, App, fail, has_records, local_store_missing
from ledgerflow.cli.render import Text
from ledgerflow.persistence.care import record_problems
from ledgerflow.persistence.records import check_uuid
from ledgerflow.persistence.uri import mask_password

__all__ = ["books", "copy", "load", "show", "upgrade", "view"]

COPY_PAGE = 200
#: Books per --page when no --limit is given.
PAGE_SIZE = 20
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON (to_dict form).")


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


@click.command()
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    help=f"At most this many books (default: all; {PAGE_SIZE} with --page).",
)
@click.option("--offset", type=click.IntRange(min=0), help="Skip this many books.")
@click.option("--page", type=click.IntRange(min=1), help="Page number (of --limit books).")
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
    newest_first: bool,
    name: str | None,
    state: str | None,
    as_json: bool,
) -> None:
    """List logbooks, one line each, in get_logbooks order, with a count of tasks per state."""
    if offset is not None and page is not None:
        fail("give --offset or --page, not both", EXIT_USAGE)
    if page is not None and limit is None:
        limit = PAGE_SIZE
    start = offset if offset is not None else ((page or 1) - 1) * (limit or 0)
    state = state.upper() if state else None
    if local_store_missing(app.backend_uri):
        _print_no_books(app, as_json, "does not exist yet")
        return
    with app.connect() as conn:
        if not has_records(conn):
            _print_no_books(app, as_json, "holds no logbooks")
            return
        total = conn.count_logbooks(name=name, state=state)

        def fetch(offset: int, count: int | None) -> list[lf.LogBook]:
            return conn.list_logbooks(
                limit=count, offset=offset, name=name, state=state, newest_first=newest_first
            )

        page_books = listing.robust_page(fetch, start, limit, total)
        if as_json:
            entries = [_book_json(conn, book) for book in page_books]
            _echo_json(entries)
            _fail_if_corrupt(sum("corrupt" in entry for entry in entries))
            return
        uuids = [book.uuid for book in page_books if isinstance(book, lf.LogBook)]
        counts = listing.per_item(conn.task_state_counts, uuids)
    _print_books(app, page_books, counts, start, total, limit)
    _fail_if_corrupt(
        sum(isinstance(item, lf.CorruptRecordError) for item in (*page_books, *counts.values()))
    )


def _book_json(conn: lf.Connection, book: lf.LogBook | lf.CorruptRecordError) -> dict[str, Any]:
    """A book's to_dict(), or what is known of it and why it is corrupt."""
    if isinstance(book, lf.CorruptRecordError):
        return {"corrupt": str(book)}
    try:
        return conn.get_logbook(book.uuid).to_dict()
    except lf.CorruptRecordError as exc:
        return {"uuid": book.uuid, "name": book.name, "corrupt": str(exc)}


def _fail_if_corrupt(count: int) -> None:
    if count:
        noun = "record is" if count == 1 else "records are"
        fail(f"{count} listed {noun} corrupt; run `ledgerflow check` for details")


def _print_no_books(app: App, as_json: bool, why: str) -> None:
    if as_json:
        _echo_json([])
    else:
        app.out.print(f"no logbooks: {app.safe_uri} {why}")


def _at_a_terminal(app: App) -> bool:
    """Whether stdout is a terminal; FORCE_COLOR (colour in CI logs) does not count."""
    isatty = getattr(app.out.file, "isatty", None)
    return bool(isatty and isatty()) or os.environ.get("TTY_COMPATIBLE") == "1"


def _print_books(
    app: App,
    page_books: list[lf.LogBook | lf.CorruptRecordError],
    counts: dict[str, dict[str, int] | lf.CorruptRecordError],
    start: int,
    total: int,
    limit: int | None,
) -> None:
    if not page_books:
        app.out.print(f"no logbooks (of {total}) at offset {start} in {app.safe_uri}")
        return
    # API.md: one line per book.  The header and paging footer are for a person at
    # a terminal; piped or captured output is exactly the book lines.
    interactive = _at_a_terminal(app)
    lines: list[Text] = []
    if interactive:
        lines.append(Text(f"{'UUID':36}  {'CREATED (UTC)':19}  NAME  TASKS", style="bold"))
    for book in page_books:
        if isinstance(book, lf.CorruptRecordError):
            lines.append(Text(f"CORRUPT  {book}", style="bold red"))
            continue
        line = Text(f"{book.uuid:36}  ")
        line.append(book.created_at.strftime("%Y-%m-%d %H:%M:%S"), style="dim")
        line.append("  ")
        line.append(book.name, style="cyan")
        line.append("  ")
        book_counts = counts.get(book.uuid, {})
        if isinstance(book_counts, lf.CorruptRecordError):
            line.append(f"CORRUPT  {book_counts}", style="bold red")
        else:
            line.append_text(render.state_counts_text(book_counts))
        lines.append(line)
    shown = start + len(page_books)
    if interactive:
        footer = f"books {start + 1}-{shown} of {total}"
        if limit is not None and shown < total:
            footer += f"; next: --page {start // limit + 2} (or --offset {shown})"
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
    with app.connect() as conn:
        if not has_records(conn):
            fail(f"no logbook, flow or task with uuid {uuid!r}: {app.safe_uri} is empty")
        if as_json:
            record = load(conn, uuid)
            _echo_json(record.to_dict())
        else:
            record, lines = view(conn, uuid, verbose, app.out.width)
            render.emit(app.out, lines)
    problems = record_problems(record)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        fail(f"{problems[0]}{more}; run `ledgerflow check`")


def load(conn: lf.Connection, uuid: str) -> lf.LogBook | lf.FlowDetail | lf.TaskDetail:
    """The book, flow (with tasks) or task that ``uuid`` names."""
    kind = conn.locate(uuid).kind
    if kind == "book":
        return conn.get_logbook(uuid)
    if kind == "flow":
        return conn.get_flow_details(uuid)
    return conn.get_task_details(uuid)


def view(
    conn: lf.Connection, uuid: str, verbose: bool, width: int
) -> tuple[lf.LogBook | lf.FlowDetail | lf.TaskDetail, list[Text]]:
    """Load the record ``uuid`` names and render its tree and timelines."""
    ref = conn.locate(uuid)
    record: lf.LogBook | lf.FlowDetail | lf.TaskDetail
    if ref.kind == "book":
        book = record = conn.get_logbook(uuid)
        lines = render.book_tree(book, verbose)
        timed = book.flows
    elif ref.kind == "flow":
        flow = record = conn.get_flow_details(uuid)
        book = conn.get_logbook(ref.book_uuid or "", lazy=True)
        lines = [render.book_header(book), *render.flow_tree(flow, "└── ", "    ", verbose)]
        timed = [flow]
    else:
        record = conn.get_task_details(uuid)
        lines = _task_view(conn, record, ref.flow_uuid or "")
        timed = []
    now = datetime.now(UTC)
    for flow in timed:
        bars = render.timeline(flow.tasks, width, now)
        if bars:
            lines.extend([Text(""), *bars])
    return record, lines


def _task_view(conn: lf.Connection, task: lf.TaskDetail, flow_uuid: str) -> list[Text]:
    """A task with its book and flow above it, and everything it recorded."""
    flow = conn.get_flow_details(flow_uuid, lazy=True)
    book_uuid = conn.locate(flow_uuid).book_uuid or ""
    book = conn.get_logbook(book_uuid, lazy=True)
    lines = [render.book_header(book), render.flow_line(flow, "└── ", with_tasks=False)]
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
