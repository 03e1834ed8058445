"""ledgerflow next to TaskFlow 6.5.0 and DBOS Transact 3.4, side by side in one run.

500 no-op tasks (BENCH_RIVAL_TASKS) on a SQLite file in WAL mode with synchronous=FULL,
each run in a fresh process, the three interleaved round after round (a slow spell of
the shared disk hits all alike), best of BENCH_RIVAL_ROUNDS (default 5).  Each system
commits what it needs to resume after a crash (ledgerflow save="always", TaskFlow's
logbook, DBOS's step outputs).  Prints figures and ratios, never asserts.

    TASKFLOW_PYTHON=/work/tfvenv/bin/python DBOS_PYTHON=/work/dbosvenv/bin/python \\
        python benchmarks/rivals_bench.py

Targets (issue 8): TaskFlow/ledgerflow >= 100x and DBOS/ledgerflow >= 5x.

Also timed, as the floor: bare sqlite3 committing one UPDATE of a task-sized row per
task at the same pragmas (``engine_bench.raw_sqlite_update``).  No system that commits
each task before the next can go below it, so "rival / floor" is the largest ratio any
such system could reach against that rival on this disk.
"""

from __future__ import annotations

import ast
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "benchmarks" / "rival_run.py")
SIZE = int(os.environ.get("BENCH_RIVAL_TASKS", "500"))
ROUNDS = int(os.environ.get("BENCH_RIVAL_ROUNDS", "5"))
PYTHONS = {
    "ledgerflow": sys.executable,
    "taskflow": os.environ.get("TASKFLOW_PYTHON", "/work/tfvenv/bin/python"),
    "dbos": os.environ.get("DBOS_PYTHON", "/work/dbosvenv/bin/python"),
    "sqlite3": sys.executable,
}
TARGETS = {"taskflow": 100.0, "dbos": 5.0}


def wal_file(path: Path) -> Path:
    """An empty SQLite file already in WAL mode (the mode is kept in the file)."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    return path


def timed(system: str, path: Path) -> float | None:
    """Seconds of one run in a fresh process, or None (with a note) if it failed."""
    args = [PYTHONS[system], SCRIPT, system, str(path), str(SIZE), str(ROOT / "src")]
    proc = subprocess.run(args, capture_output=True, text=True, check=False, cwd=ROOT)
    if proc.returncode != 0:
        print(f"    {system} failed: {proc.stderr.strip().splitlines()[-1:]}")
        return None
    return float(ast.literal_eval(proc.stdout.strip().splitlines()[-1]))


def main() -> None:
    systems = [name for name, python in PYTHONS.items() if Path(python).exists()]
    for name in set(PYTHONS) - set(systems):
        print(f"skipped {name}: no python at {PYTHONS[name]} (see the docstring)")
    print(f"{SIZE} no-op tasks, SQLite WAL + synchronous=FULL, fresh processes, best of {ROUNDS}")
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(ROUNDS):
            for system in systems:
                seconds = timed(system, wal_file(Path(tmp) / f"{system}{round_}.db"))
                if seconds is not None:
                    best[system] = min(best.get(system, seconds), seconds)
    mine = best.get("ledgerflow")
    floor = best.get("sqlite3")
    for system, seconds in best.items():
        line = f"    {system:10} {seconds * 1e6 / SIZE:9.1f} us/task"
        if mine and system in TARGETS:
            line += f"   = {seconds / mine:6.1f}x ledgerflow   target >= {TARGETS[system]:g}x"
            if floor:
                line += f"   (= {seconds / floor:.1f}x the floor)"
        elif system == "sqlite3":
            line += "   the floor: bare sqlite3, one committed UPDATE per task"
            if mine:
                line += f"; ledgerflow = {mine / seconds:.2f}x it"
        print(line)


if __name__ == "__main__":
    main()
