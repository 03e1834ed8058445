"""Store care at scale: ``ledgerflow check`` and ``purge`` on 100,000 books.

Targets (issue 12): ``check`` reads a 100,000-book SQLite store in <= 10 s; ``purge``
removes 100,000 finished books in <= 20 s on SQLite and PostgreSQL.  Each book has
one flow of three tasks with results and times.  ``check`` runs as the CLI does it
(every record decoded, plus SQLite's integrity check); purge through ``lf.purge``.
Prints figures; asserts nothing.

    python benchmarks/care_bench.py [--books 100000] [--postgres URI | --no-postgres]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import ledgerflow as lf
from ledgerflow import states
from ledgerflow.models import utcnow
from ledgerflow.persistence import records

BATCH = 2000
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _book(index: int) -> lf.LogBook:
    book = lf.LogBook(f"nightly-{index:06d}", meta={"index": index})
    flow = lf.FlowDetail("publish", state=states.SUCCESS, meta={"factory": "app.flows:build"})
    ended = utcnow() - timedelta(days=40)
    flow.updated_at = ended
    for position in range(3):
        task = lf.TaskDetail(f"step_{position}", state=states.SUCCESS, result={"rows": index})
        task.attempts = 1
        task.started_at = ended - timedelta(seconds=3 - position)
        task.finished_at = task.started_at + timedelta(seconds=0.7)
        flow.add(task)
    book.add(flow)
    return book


def fill(backend: lf.Backend, books: int) -> float:
    """Write ``books`` books, BATCH per transaction, rows in bulk; return the seconds it took."""
    start = time.perf_counter()
    with backend.connect() as conn:
        conn.upgrade()
        for first in range(0, books, BATCH):
            batch = [_book(index) for index in range(first, min(first + BATCH, books))]
            rows: dict[str, list[dict[str, object]]] = {"book": [], "flow": [], "task": []}
            for book in batch:
                rows["book"].append({**records.book_to_row(book), "revision": 1})
                for flow in book:
                    rows["flow"].append({**records.flow_to_row(flow, book.uuid), "revision": 1})
                    rows["task"] += [
                        {**records.task_to_row(task, flow.uuid), "revision": 1} for task in flow
                    ]
            with conn._transaction():  # type: ignore[attr-defined]  # bulk load, not the API
                for kind in ("book", "flow", "task"):
                    conn._insert(kind, rows[kind])  # type: ignore[attr-defined]
    return time.perf_counter() - start


def timed(action: Callable[[], object]) -> tuple[float, object]:
    """Seconds ``action`` took, and what it returned."""
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def bench_check(uri: str, books: int) -> None:
    """Time ``check`` over every record of the store."""
    with lf.open_backend(uri) as backend, backend.connect() as conn:
        seconds, found = timed(lambda: list(conn.check()))
    print(f"check, {books:,} books (x1 flow, x3 tasks): {seconds:.2f} s (target <= 10 s); "
          f"{len(found)} problems")  # fmt: skip


def bench_purge(label: str, uri: str, books: int) -> None:
    """Time a dry run, then the purge of every (finished, old) book."""
    with lf.open_backend(uri) as backend:
        seconds, counted = timed(
            lambda: lf.purge(backend, older_than=timedelta(days=30), dry_run=True)
        )
        print(f"purge --dry-run on {label}: {seconds:.2f} s, would purge {counted:,}")
        seconds, purged = timed(lambda: lf.purge(backend, older_than=timedelta(days=30)))
        print(f"purge on {label}: {purged:,} books in {seconds:.2f} s (target <= 20 s)")
        with backend.connect() as conn:
            print(f"  left afterwards: {conn.count_logbooks()} books")


def _pg_database(admin: str) -> tuple[str, Callable[[], None]]:
    import psycopg

    name = f"lf_care_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return f"{admin.rsplit('/', 1)[0]}/{name}", drop


def main() -> None:
    """Fill, check and purge; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--books", type=int, default=100_000)
    parser.add_argument("--postgres", default=PG_ADMIN, help="admin URI (a database is created)")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{Path(tmp) / 'care.db'}"
        with lf.open_backend(uri) as backend:
            print(f"filled SQLite with {args.books:,} books in {fill(backend, args.books):.1f} s")
        bench_check(uri, args.books)
        bench_purge("SQLite", uri, args.books)
    if args.no_postgres:
        return
    pg_uri, drop = _pg_database(args.postgres)
    try:
        with lf.open_backend(pg_uri) as backend:
            print(
                f"filled PostgreSQL with {args.books:,} books in {fill(backend, args.books):.1f} s"
            )
        bench_purge("PostgreSQL", pg_uri, args.books)
    finally:
        drop()


if __name__ == "__main__":
    main()
