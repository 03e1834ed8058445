"""How fast the CLI answers on a big SQLite store: `books` first page and `show` of a huge flow.

Builds (or reuses, with --db) a SQLite store of 100,000 logbooks, each with one
flow of three tasks in mixed states, plus one book whose flow has 10,000 tasks.
Then times, as a user sees it, ``python -m ledgerflow books`` (time to the first
page) and ``python -m ledgerflow show FLOW`` (the 10,000-task tree and timeline),
both as a fresh process and warm in-process.  Prints figures; asserts nothing.

    python benchmarks/cli_bench.py [--books 100000] [--tasks 10000] [--db PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner

import ledgerflow as lf
from ledgerflow import states
from ledgerflow.cli import cli
from ledgerflow.models import utcnow

SRC = Path(__file__).resolve().parents[1] / "src"
BATCH = 2000
#: Fresh-process targets (issue 10): books/flows first page and show of a small run 0.3 s.
TARGETS = {"books": 0.3, "flows": 0.3, "show small": 0.3, "show": 2.0}
MIXES = [
    (states.SUCCESS, states.SUCCESS, states.SUCCESS),
    (states.SUCCESS, states.REVERTED, states.PENDING),
    (states.SUCCESS, states.RUNNING, states.PENDING),
]


def make_book(index: int, flow_state: str, task_states: tuple[str, ...]) -> lf.LogBook:
    """A realistic small run: one flow, a few tasks with results, times and a failure."""
    book = lf.LogBook(f"nightly-{index:06d}", meta={"index": index})
    flow = lf.FlowDetail("publish", state=flow_state, meta={"factory": "app.flows:build"})
    start = utcnow() - timedelta(hours=1)
    for position, state in enumerate(task_states):
        task = lf.TaskDetail(f"step_{position}", state=state)
        if state != states.PENDING:
            task.attempts = 1
            task.started_at = start + timedelta(seconds=position)
        if state in (states.SUCCESS, states.REVERTED):
            task.finished_at = start + timedelta(seconds=position + 0.7)
            task.result = {"rows": index, "ok": state == states.SUCCESS}
        flow.add(task)
    book.add(flow)
    return book


def huge_book(tasks: int) -> lf.LogBook:
    """One book whose flow has ``tasks`` tasks, one of them stuck RUNNING."""
    book = make_book(-1, states.RUNNING, ())
    book.name = "huge-flow"
    flow = book.flows[0]
    start = utcnow() - timedelta(hours=2)
    for position in range(tasks):
        task = lf.TaskDetail(f"shard_{position:05d}", state=states.SUCCESS, result=position)
        task.attempts = 1
        task.started_at = start + timedelta(milliseconds=position * 300)
        task.finished_at = task.started_at + timedelta(milliseconds=250 + position % 7 * 40)
        flow.add(task)
    flow.tasks[tasks // 2].state = states.RUNNING
    flow.tasks[tasks // 2].finished_at = None
    return book


def build_store(uri: str, books: int, tasks: int) -> str:
    """Fill the store; return the uuid of the huge flow."""
    with lf.open_backend(uri) as backend, backend.connect() as conn:
        conn.upgrade()
        started = time.perf_counter()
        for first in range(0, books, BATCH):
            # One transaction per batch (the base's transactions nest), so the
            # benchmark does not pay one durable commit per book.
            with conn._transaction():  # type: ignore[attr-defined]
                for index in range(first, min(books, first + BATCH)):
                    mix = MIXES[index % len(MIXES)]
                    flow_state = {0: states.SUCCESS, 1: states.REVERTED, 2: states.RUNNING}
                    conn.save_logbook(make_book(index, flow_state[index % 3], mix))
        huge = huge_book(tasks)
        conn.save_logbook(huge)
        print(
            f"built {books:,} books + a {tasks:,}-task flow in {time.perf_counter() - started:.1f}s"
        )
        return huge.flows[0].uuid


def time_process(args: list[str], cwd: str, repeat: int) -> tuple[float, float, int]:
    """Best and median wall time of a fresh ``python -m ledgerflow`` process, its output lines."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "120"}
    times, lines = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "ledgerflow", *args], capture_output=True, cwd=cwd, env=env
        )
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(done.stderr.decode())
        lines = len(done.stdout.splitlines())
    return min(times), statistics.median(times), lines


def time_python(code: str, cwd: str, repeat: int) -> tuple[float, float]:
    """Best and median wall time of ``python -c code`` in a fresh process."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=cwd, check=True)
        times.append(time.perf_counter() - started)
    return min(times), statistics.median(times)


def time_in_process(args: list[str], repeat: int = 3) -> float:
    """Best wall time of the command run through CliRunner (imports already warm)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        result = CliRunner().invoke(cli, args)
        best = min(best, time.perf_counter() - started)
        if result.exit_code != 0:
            raise SystemExit(result.output)
    return best


def main() -> None:
    """Build the store and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--books", type=int, default=100_000)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--db", help="reuse (or create) this SQLite file instead of a temp one")
    parser.add_argument("--repeat", type=int, default=7, help="fresh processes per command")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(options.db) if options.db else Path(tmp) / "bench.db"
        uri = f"sqlite:///{path.resolve()}"
        if path.exists():
            with lf.open_backend(uri) as backend, backend.connect() as conn:
                huge = conn.list_logbooks(name="huge-flow", limit=1)[0]
                flow_uuid = conn.get_logbook(huge.uuid, lazy=False).flows[0].uuid
                print(f"reusing {path}: {conn.count_logbooks():,} books")
        else:
            flow_uuid = build_store(uri, options.books, options.tasks)
        with lf.open_backend(uri) as backend, backend.connect() as conn:
            small = conn.list_logbooks(limit=1, offset=7)[0].uuid
        cases = {
            "python -c pass": None,
            "python -c 'import sqlalchemy'": None,
            "books": ["--backend", uri, "books", "--page", "1"],
            "flows": ["--backend", uri, "flows", "--limit", "20"],
            "show small": ["--backend", uri, "show", small],
            "books --page 2000": ["--backend", uri, "books", "--page", "2000"],
            "books --state RUNNING": [
                "--backend",
                uri,
                "books",
                "--state",
                "RUNNING",
                "--page",
                "1",
            ],
            "show": ["--backend", uri, "show", flow_uuid],
            "show --json": ["--backend", uri, "show", flow_uuid, "--json"],
        }
        repeat = options.repeat
        print(
            f"{repeat} fresh processes per command (interpreter start + imports + query + "
            "output); in-process: best of 3 through CliRunner"
        )
        print(
            f"{'command':24} {'best':>8} {'median':>8} {'in-process':>11} {'lines':>7}  "
            "target (median's share)"
        )
        for name, args in cases.items():
            if args is None:  # the floor: interpreter start (and SQLAlchemy's import)
                code = "import sqlalchemy" if "sqlalchemy" in name else "pass"
                best, median = time_python(code, tmp, repeat)
                print(f"{name:24} {best:7.3f}s {median:7.3f}s")
                continue
            best, median, lines = time_process(args, tmp, repeat)
            warm = time_in_process(args)
            target = TARGETS.get(name, TARGETS.get(name.split()[0], 0.0))
            ratio = f"<= {target:.1f}s ({median / target:.0%})" if target else ""
            print(f"{name:24} {best:7.3f}s {median:7.3f}s {warm:10.3f}s {lines:7d}  {ratio}")


if __name__ == "__main__":
    main()
