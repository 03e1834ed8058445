"""Board figures: claim + complete per second with 4 worker processes, per board.

Run as ``python benchmarks/board_bench.py [JOBS]``.  Jobs are posted first (not
timed); then 4 processes each loop ``claim`` + ``complete`` until the board is empty.
Targets (issue 9): >= 1,500/s on PostgreSQL, >= 5,000/s on Redis.  PostgreSQL and
MariaDB use a private database dropped afterwards; Redis uses its database 13,
flushed before and after.  Never asserts a timing.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import ledgerflow as lf

PG_ADMIN = os.environ.get("LEDGERFLOW_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URI = "redis://127.0.0.1:6379/13"
WORKERS = 4
FACTORY = "bench.never_imported:build"


@contextlib.contextmanager
def pg_database() -> Iterator[str]:
    """A private PostgreSQL database for the run."""
    import psycopg

    name = f"lf_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def redis_board_uri() -> Iterator[str]:
    """Redis database 13, flushed before and after."""
    import redis

    client = redis.Redis.from_url(REDIS_URI)
    client.flushdb()
    try:
        yield REDIS_URI
    finally:
        client.flushdb()
        client.close()


def worker(board_uri: str, backend: str | None, start: float, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """Claim and complete until nothing is left; report how many."""
    board = lf.open_board(board_uri, backend=backend, create=False)
    owner = f"bench-{os.getpid()}"
    done = 0
    while time.time() < start:
        time.sleep(0.001)
    while (job := board.claim(owner, 30.0)) is not None:
        board.complete(job.uuid, owner, "DONE", None)
        done += 1
    queue.put((done, time.time()))
    board.close()


def measure(label: str, board_uri: str, backend: str | None, jobs: int) -> float:
    """Post ``jobs`` jobs, then time 4 processes claiming and completing them all."""
    board = lf.open_board(board_uri, backend=backend)
    board.clear_all()
    for _ in range(jobs):
        board.post(FACTORY)
    board.close()
    context = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue = context.Queue()  # type: ignore[type-arg]
    start = time.time() + 2.0  # every worker connected and waiting
    processes = [
        context.Process(target=worker, args=(board_uri, backend, start, queue))
        for _ in range(WORKERS)
    ]
    for process in processes:
        process.start()
    results = [queue.get() for _ in processes]
    for process in processes:
        process.join()
    total = sum(done for done, _ in results)
    elapsed = max(end for _, end in results) - start
    rate = total / elapsed
    print(f"{label:<22} {total:>6} claim+complete in {elapsed:6.2f} s = {rate:8.0f}/s", flush=True)
    return rate


def main() -> None:
    """Measure each board that is reachable."""
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
    print(f"board: claim + complete with {WORKERS} worker processes, {jobs} jobs")
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        logbooks = f"sqlite:///{tmp}/logbooks.db"
        try:
            with pg_database() as pg:
                rates["postgresql"] = measure("PostgreSQL (SKIP LOCKED)", pg, None, jobs)
        except Exception as error:
            print(f"PostgreSQL skipped: {error}")
        try:
            with redis_board_uri() as uri:
                rates["redis"] = measure("Redis (Lua)", uri, logbooks, jobs)
        except Exception as error:
            print(f"Redis skipped: {error}")
        rates["sqlite"] = measure(
            "SQLite (BEGIN IMMEDIATE)", f"sqlite:///{tmp}/board.db", None, jobs // 2
        )
    for name, target in (("postgresql", 1500), ("redis", 5000)):
        if name in rates:
            print(f"{name}: {rates[name]:.0f}/s vs target {target}/s = {rates[name] / target:.2f}x")


if __name__ == "__main__":
    main()
