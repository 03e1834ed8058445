"""Persistence figures: the engine's hot path, big logbooks and big results.

Run as ``python benchmarks/persistence_bench.py``.  Prints figures and ratios and
never asserts a timing.  PostgreSQL and MariaDB figures use a private database
created for the run and dropped afterwards; an unreachable server is reported
and skipped.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from engine_bench import timed_run  # this folder: the engine's timing, shared

import ledgerflow as lf
from ledgerflow.persistence import records
from ledgerflow.persistence.sql.backend import SQLBackend

PG_ADMIN = os.environ.get("LEDGERFLOW_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_ADMIN = os.environ.get("LEDGERFLOW_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test")
RUN_ID = uuid.uuid4().hex[:10]
UPDATES = 400
BIG_TASKS = 10_000
BIG_RESULT = 16 * 1024 * 1024


def best_of(repeat: int, fn: Callable[[], None]) -> float:
    """The fastest of ``repeat`` runs of ``fn``, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def make_book(tasks: int) -> lf.LogBook:
    """A book with one flow of ``tasks`` task details."""
    book = lf.LogBook("bench")
    flow = lf.FlowDetail("flow")
    book.add(flow)
    for i in range(tasks):
        flow.add(lf.TaskDetail(f"task-{i}", meta={"i": i}))
    return book


# ---- (1) the hot path ----------------------------------------------------------------
class RawUpdater:
    """The same UPDATE+COMMIT of a task row through sqlite3 directly, same pragmas."""

    def __init__(self, path: Path, task: lf.TaskDetail) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON"):
            self.db.execute(f"PRAGMA {pragma}")
        row = records.task_to_row(task, None)
        columns = [c for c in records.TASK_COLUMNS if c not in ("uuid", "flow_uuid", "revision")]
        self.sql = (
            "UPDATE ledgerflow_task_details SET "
            + ", ".join(f"{c} = ?" for c in columns)
            + ", revision = revision + 1 WHERE uuid = ? AND revision = ?"
        )
        self.values = [str(row[c]) if row[c] is not None else None for c in columns]
        self.uuid = task.uuid
        self.revision = task.revision

    def update(self) -> None:
        """One committed compare-and-set UPDATE."""
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute(self.sql, [*self.values, self.uuid, self.revision])
        self.db.execute("COMMIT")
        self.revision += 1


def interleaved(rounds: int, block: int, **fns: Callable[[], None]) -> dict[str, float]:
    """Mean seconds per call of each fn, run in alternating blocks (fair on a busy machine)."""
    totals = dict.fromkeys(fns, 0.0)
    for _ in range(rounds):
        for label, fn in fns.items():
            start = time.perf_counter()
            for _ in range(block):
                fn()
            totals[label] += time.perf_counter() - start
    return {label: total / (rounds * block) for label, total in totals.items()}


def hot_path(tmp: Path) -> None:
    """Committed update_task_details vs raw sqlite3, and update_details of two records."""
    print("== (1) hot path on a SQLite file (WAL, synchronous=FULL) ==")
    path = tmp / "hot.db"
    backend = SQLBackend(f"sqlite:///{path}")
    with backend.connect() as conn:
        conn.upgrade()
        book = conn.save_logbook(make_book(10))
        flow, task, other = book.flows[0], book.flows[0].tasks[0], book.flows[0].tasks[1]
        raw = RawUpdater(path, other)
        for _ in range(20):  # warm up: statement compilation, pool
            conn.update_task_details(task)
            raw.update()

        def ours() -> None:
            task.attempts += 1
            conn.update_task_details(task)

        figures = interleaved(
            UPDATES // 50,
            50,
            raw=raw.update,
            ours=ours,
            pair=lambda: conn.update_details(flow, task),
        )
        raw.db.close()
    backend.close()
    base = figures["raw"]
    print(f"raw sqlite3 UPDATE+COMMIT            {base * 1e6:9.1f} us")
    for label, key in (
        ("update_task_details (committed)", "ours"),
        ("update_details(flow, task), one tx", "pair"),
    ):
        print(f"{label:<36} {figures[key] * 1e6:9.1f} us   ratio {figures[key] / base:.2f}x")


# ---- (2) big logbooks ------------------------------------------------------------------
@contextlib.contextmanager
def counting(backend: SQLBackend) -> Iterator[list[str]]:
    """Collect every statement the backend's engine sends."""
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    event.listen(backend.engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(backend.engine, "before_cursor_execute", record)


def big_book(uri: str, label: str) -> None:
    """Save and load a 10,000-task logbook: time and number of queries."""
    backend = SQLBackend(uri)
    with backend.connect() as conn:
        conn.upgrade()
        conn.clear_all()
        book = make_book(BIG_TASKS)
        start = time.perf_counter()
        conn.save_logbook(book)
        saved = time.perf_counter() - start
        conn.get_logbook(book.uuid)  # warm up
        with counting(backend) as statements:
            loaded = best_of(3, lambda: conn.get_logbook(book.uuid))
        queries = len(statements) // 3
        conn.clear_all()
    backend.close()
    print(
        f"{label:<11} save {saved * 1e3:8.1f} ms   load {loaded * 1e3:7.1f} ms in {queries} queries"
    )


# ---- (3) a 16 MB result ------------------------------------------------------------------
def big_result(uri: str, label: str) -> None:
    """Store and load one task whose result is a 16 MB string."""
    backend = lf.open_backend(uri)
    try:
        with backend.connect() as conn:
            conn.upgrade()
            book = make_book(1)
            task = book.flows[0].tasks[0]
            task.result = "x" * BIG_RESULT
            start = time.perf_counter()
            conn.save_logbook(book)
            stored = time.perf_counter() - start
            start = time.perf_counter()
            ok = conn.get_task_details(task.uuid).result == task.result
            loaded = time.perf_counter() - start
            conn.clear_all()
        verdict = "round-trips" if ok else "DIFFERS"
        print(f"{label:<11} store {stored * 1e3:7.1f} ms   load {loaded * 1e3:7.1f} ms   {verdict}")
    except lf.StorageError as exc:
        print(f"{label:<11} failed: {exc}")
    finally:
        backend.close()


# ---- (4) the engine on PostgreSQL ---------------------------------------------------------
ENGINE_TASKS = 1000


def _raw_psycopg(uri: str, updates_per_commit: int) -> float:
    """Seconds for ENGINE_TASKS commits of ``updates_per_commit`` single-row UPDATEs."""
    import psycopg

    with psycopg.connect(uri) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS raw_bench (uuid TEXT PRIMARY KEY, state TEXT, "
            "attempts INT, updated_at TEXT, revision INT)"
        )
        conn.execute("TRUNCATE raw_bench")
        keys = [str(uuid.uuid4()) for _ in range(ENGINE_TASKS + 1)]
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO raw_bench VALUES (%s, 'PENDING', 0, '', 1)", [(k,) for k in keys]
            )
        conn.commit()
        start = time.perf_counter()
        for i in range(ENGINE_TASKS):
            for key in keys[i : i + updates_per_commit]:
                conn.execute(
                    "UPDATE raw_bench SET state = 'SUCCESS', attempts = 1, updated_at = %s, "
                    "revision = revision + 1 WHERE uuid = %s",
                    (str(time.time()), key),
                )
            conn.commit()
        return time.perf_counter() - start


def engine_on_postgres(uri: str) -> None:
    """save="always"/"batched" per task next to raw psycopg commits (best of 3 each)."""
    print(f"\n== (4) the engine on PostgreSQL, {ENGINE_TASKS} no-op tasks, best of 3 ==")
    with lf.open_backend(uri) as backend:
        with backend.connect() as conn:
            conn.upgrade()
        always = min(timed_run(ENGINE_TASKS, backend, "always")[1] for _ in range(3))
        batched = min(timed_run(ENGINE_TASKS, backend, "batched")[1] for _ in range(3))
    one = min(_raw_psycopg(uri, 1) for _ in range(3))
    two = min(_raw_psycopg(uri, 2) for _ in range(3))
    per = 1e6 / ENGINE_TASKS
    print(f"raw psycopg, 1 UPDATE + COMMIT per task   {one * per:7.1f} us")
    print(f"raw psycopg, 2 UPDATEs + COMMIT per task  {two * per:7.1f} us")
    ratio = always / one
    print(f"ledgerflow save='always'                  {always * per:7.1f} us   ratio {ratio:.2f}x")
    print(f"ledgerflow save='batched'                 {batched * per:7.1f} us")


# ---- private server databases ------------------------------------------------------------
@contextlib.contextmanager
def postgres_database() -> Iterator[str | None]:
    """A fresh PostgreSQL database URI, or None if the server is unreachable."""
    import psycopg

    name = f"lf_bench_{RUN_ID}"
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        print(f"PostgreSQL unreachable, skipped: {str(exc).strip()}")
        yield None
        return
    try:
        yield f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def mysql_database() -> Iterator[str | None]:
    """A fresh MariaDB/MySQL database URI, or None if the server is unreachable."""
    import pymysql

    name = f"lf_bench_{RUN_ID}"
    try:
        admin = pymysql.connect(host="127.0.0.1", port=3306, user="root", connect_timeout=5)
    except pymysql.err.OperationalError as exc:
        print(f"MariaDB unreachable, skipped: {exc}")
        yield None
        return
    with admin:
        admin.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    try:
        yield f"{MYSQL_ADMIN.rsplit('/', 1)[0]}/{name}"
    finally:
        with pymysql.connect(host="127.0.0.1", port=3306, user="root") as admin:
            admin.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")


def main() -> int:
    """Print every figure."""
    with (
        tempfile.TemporaryDirectory() as directory,
        postgres_database() as pg_uri,
        mysql_database() as mysql_uri,
    ):
        tmp = Path(directory)
        hot_path(tmp)
        print(f"\n== (2) a logbook with {BIG_TASKS:,} task details ==")
        big_book(f"sqlite:///{tmp / 'big.db'}", "sqlite")
        if pg_uri:
            big_book(pg_uri, "postgresql")
        print(f"\n== (3) a {BIG_RESULT // (1024 * 1024)} MB result: store + load ==")
        stores = [("memory", "memory://"), ("sqlite", f"sqlite:///{tmp / 'result.db'}")]
        if importlib.util.find_spec("ledgerflow.persistence.files") is not None:
            stores.append(("file", f"file://{tmp / 'files'}"))
        stores += [
            (label, uri) for label, uri in (("postgresql", pg_uri), ("mysql", mysql_uri)) if uri
        ]
        for label, uri in stores:
            big_result(uri, label)
        if pg_uri:
            engine_on_postgres(pg_uri)
    return 0


if __name__ == "__main__":
    sys.exit(main())
