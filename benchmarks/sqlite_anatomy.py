"""Where the SQLite ``save="always"`` time goes: WAL pages per commit, CPU per task, WAL growth.

Figures behind the design of the hot path (see migration 0002 and engine_bench (b)):

1. WAL pages each engine commit writes, on a store at schema revision 0001 (with the
   task indexes on name and updated_at) and at head (without them);
2. CPU per task without fsync (``synchronous=normal``): ledgerflow vs a raw sqlite3
   UPDATE+COMMIT loop at the same pragmas;
3. a raw commit that extends the WAL vs one that reuses its blocks (``synchronous=FULL``).

Run from the repository root: ``python benchmarks/sqlite_anatomy.py``.  Prints only.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import engine_bench  # noqa: E402

import ledgerflow as lf  # noqa: E402
from ledgerflow.persistence.sql import migrate  # noqa: E402
from ledgerflow.persistence.sql.backend import SQLBackend  # noqa: E402

TASKS = 1000
TASK_TABLE = "ledgerflow_task_details"
WAL_HEADER, FRAME = 32, 4096 + 24  # the default page size plus the frame header


def wal_pages_per_commit(path: Path, old_indexes: bool) -> float:
    """Run a linear flow with checkpoints off; WAL frames written per task."""
    backend = lf.open_backend(f"sqlite:///{path}")
    assert isinstance(backend, SQLBackend)

    def no_checkpoints(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA wal_autocheckpoint = 0")

    sa.event.listen(backend.engine, "connect", no_checkpoints)
    engine = lf.load(engine_bench.linear(TASKS), backend=backend, save="always")
    if old_indexes:  # the two indexes migration 0002 dropped, as revision 0001 made them
        with backend.engine.begin() as raw:
            for column in ("name", "updated_at"):
                raw.exec_driver_sql(
                    f"CREATE INDEX ix_{TASK_TABLE}_{column} ON {TASK_TABLE} ({column})"
                )
    before = os.path.getsize(f"{path}-wal")
    engine.run()
    frames = (os.path.getsize(f"{path}-wal") - max(before, WAL_HEADER)) / FRAME
    backend.close()
    return frames / TASKS


def cpu_per_task(directory: Path, rounds: int = 3) -> tuple[float, float]:
    """(ledgerflow, raw) µs per task at synchronous=normal: no fsync, so CPU and page writes."""
    mine, raw = [], []
    for i in range(rounds):
        uri = f"sqlite:///{directory / f'cpu{i}.db'}?synchronous=normal"
        mine.append(engine_bench.timed_run(TASKS, uri, "always")[1])
        raw.append(
            engine_bench.raw_sqlite_update(str(directory / f"raw{i}.db"), TASKS, True, 1, "NORMAL")[
                0
            ]
        )
    return min(mine) / TASKS * 1e6, min(raw) / TASKS * 1e6


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        print(f"SQLite {TASKS}-task linear flow, save='always'")
        old = wal_pages_per_commit(directory / "old.db", True)
        new = wal_pages_per_commit(directory / "head.db", False)
        head = migrate.head()
        print(f"  WAL pages per task, with 0001's task indexes on name, updated_at {old:5.2f}")
        print(f"  WAL pages per task, schema {head} (those indexes dropped)        {new:5.2f}")
        mine, raw = cpu_per_task(directory)
        print(f"  synchronous=normal (no fsync): ledgerflow {mine:6.1f} us/task, raw {raw:6.1f} us")
        grow, reuse = engine_bench.raw_sqlite_update(str(directory / "wal.db"), TASKS, True, 2)
        print(
            f"  raw commit at synchronous=FULL: WAL growing {grow / TASKS * 1e6:6.1f} us, "
            f"WAL reused {reuse / TASKS * 1e6:6.1f} us"
        )


if __name__ == "__main__":
    main()
