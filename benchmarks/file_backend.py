"""Figures for the file backend next to memory (and SQLite when installed).

Run: python benchmarks/file_backend.py [--updates N]
Prints per-operation times and ratios; it never passes or fails.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import ledgerflow as lf
from ledgerflow import states
from ledgerflow.testing.conformance import make_book


def per_op(action: Callable[[], object], count: int) -> float:
    """Mean seconds per call of ``action`` over ``count`` calls."""
    start = time.perf_counter()
    for _ in range(count):
        action()
    return (time.perf_counter() - start) / count


def measure(uri: str, updates: int) -> dict[str, float]:
    """Seconds per update_task_details, save_logbook (10x10) and get_logbook on ``uri``."""
    backend = lf.open_backend(uri)
    with backend.connect() as conn:
        conn.upgrade()
        book = conn.save_logbook(make_book(flows=10, tasks=10))
        task = book.flows[0].tasks[0]

        def update() -> None:
            task.state = states.RUNNING if task.state != states.RUNNING else states.SUCCESS
            conn.update_task_details(task)

        figures = {
            "update_task_details": per_op(update, updates),
            "save_logbook 10x10": per_op(
                lambda: conn.save_logbook(make_book(flows=10, tasks=10)), 20
            ),
            "get_logbook 10x10": per_op(lambda: conn.get_logbook(book.uuid), 50),
        }
    backend.close()
    return figures


def main() -> None:
    """Print a table of figures per backend and ratios to memory."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--updates", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        uris = {
            "memory": "memory://",
            "file (fsync)": f"file://{Path(tmp) / 'durable'}",
            "file (fsync=false)": f"file://{Path(tmp) / 'fast'}?fsync=false",
            "sqlite": f"sqlite:///{Path(tmp) / 'runs.db'}",
        }
        results: dict[str, dict[str, float]] = {}
        for label, uri in uris.items():
            try:
                results[label] = measure(uri, args.updates)
            except (lf.BackendNotFound, ImportError) as exc:
                print(f"{label}: skipped ({exc})")
    base = results["memory"]
    for label, figures in results.items():
        print(label)
        for name, seconds in figures.items():
            print(f"  {name:<22} {seconds * 1e3:9.3f} ms   x{seconds / base[name]:8.1f} memory")


if __name__ == "__main__":
    main()
