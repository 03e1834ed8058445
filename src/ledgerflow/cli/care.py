"""Store care commands: ``check`` (find corrupt records) and ``purge`` (remove old books).

``check`` only reads.  ``purge`` removes through ``lf.purge`` (batched, each batch
re-checked in the store), with a progress bar when stderr is a terminal.
"""

from __future__ import annotations

import json
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import ledgerflow as lf
from ledgerflow.cli.app import EXIT_FAILURE, App, fail, has_records, local_store_missing
from ledgerflow.cli.flows import DurationType
from ledgerflow.persistence.care import DEFAULT_PURGE_STATES, FINISHED_STATES

__all__ = ["check", "purge"]


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of what is wrong.")
@click.pass_obj
def check(app: App, as_json: bool) -> None:
    """Read every record and report each corrupt one (uuid, where it lives); exit 1 if any."""
    if local_store_missing(app.backend_uri):
        if as_json:
            _echo_json([])
        else:
            app.out.print(f"{app.safe_uri} does not exist yet; nothing to check")
        return
    with app.connect() as conn:
        damages = _damages(conn)
    if as_json:
        _echo_json([damage.to_dict() for damage in damages])
    else:
        for damage in damages:
            app.out.print(f"CORRUPT {damage}")
        if not damages:
            app.out.print(f"{app.safe_uri}: every record reads back; no problem found")
    if damages:
        noun = "problem" if len(damages) == 1 else "problems"
        fail(f"{len(damages)} {noun} found in {app.safe_uri}", EXIT_FAILURE)


def _damages(conn: lf.Connection) -> list[lf.Damage]:
    """What ``conn.check()`` finds; a store too damaged to open is one problem itself."""
    try:
        if not has_records(conn):
            return []
        return list(conn.check())
    except lf.CorruptStoreError as exc:
        return [lf.Damage(None, None, "the store", str(exc))]


@click.command()
@click.option(
    "--older-than",
    required=True,
    type=DurationType(),
    help="Only books whose flows all ended longer ago than this (e.g. 30d, 12h, 15m, 90s).",
)
@click.option(
    "--state",
    "end_states",
    multiple=True,
    type=click.Choice(sorted(FINISHED_STATES), case_sensitive=False),
    help=f"End states to purge (repeatable; default: {', '.join(DEFAULT_PURGE_STATES)}).",
)
@click.option("--dry-run", is_flag=True, help="Count what would go; remove nothing.")
@click.option("--json", "as_json", is_flag=True, help='Print {"purged": N} (or "would_purge").')
@click.pass_obj
def purge(
    app: App, older_than: Any, end_states: tuple[str, ...], dry_run: bool, as_json: bool
) -> None:
    """Remove books whose flows all ended before now - DURATION; never unfinished or owned ones."""
    wanted = tuple(state.upper() for state in end_states) or DEFAULT_PURGE_STATES
    count = 0
    if not local_store_missing(app.backend_uri):
        with app.open() as backend:
            with backend.connect() as conn:
                if not has_records(conn):
                    return _report(app, 0, dry_run, as_json)
            count = _purge_with_progress(app, backend, older_than, wanted, dry_run)
    _report(app, count, dry_run, as_json)


def _purge_with_progress(
    app: App, backend: lf.Backend, older_than: Any, wanted: tuple[str, ...], dry_run: bool
) -> int:
    with Progress(
        TextColumn("checking books" if dry_run else "purging books"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=app.err,
        transient=True,
        disable=not app.err.is_terminal,
    ) as progress:
        bar = progress.add_task("purge", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(bar, completed=done, total=total)

        return lf.purge(
            backend, older_than=older_than, states=wanted, dry_run=dry_run, progress=advance
        )


def _report(app: App, count: int, dry_run: bool, as_json: bool) -> None:
    if as_json:
        _echo_json({"would_purge" if dry_run else "purged": count})
        return
    books = f"{count} book" + ("" if count == 1 else "s")
    verb = "would purge" if dry_run else "purged"
    app.out.print(f"{verb} {books} from {app.safe_uri}")
