"""Child process for the file-store tests: ``python file_worker.py COMMAND STORE_URI ARGS``.

Run as a script (never imported by pytest) so the tests can write from real,
separate processes and kill them with SIGKILL.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
from typing import Any

import ledgerflow as lf
from ledgerflow import states


def big_book(name: str, flows: int, tasks: int, payload: int) -> lf.LogBook:
    """A book whose every task carries ``payload`` bytes of result."""
    book = lf.LogBook(name)
    for f in range(flows):
        flow = lf.FlowDetail(f"flow-{f}")
        for t in range(tasks):
            flow.add(lf.TaskDetail(f"task-{f}-{t}", state=states.SUCCESS, result="r" * payload))
        book.add(flow)
    return book


def increment(conn: lf.Connection, task_uuid: str, times: int) -> None:
    """Add one to the task's integer result ``times`` times, retrying on conflicts."""
    conflicts = 0
    for _ in range(times):
        while True:
            task = conn.get_task_details(task_uuid)
            task.result += 1
            try:
                conn.update_task_details(task)
                break
            except lf.ConflictError:
                conflicts += 1
    print(json.dumps({"conflicts": conflicts}), flush=True)


def add_tasks(conn: lf.Connection, flow_uuid: str, prefix: str, count: int) -> None:
    """Append ``count`` tasks to one flow through update_flow_details, retrying conflicts."""
    for n in range(count):
        while True:
            flow = conn.get_flow_details(flow_uuid, lazy=True)
            flow.add(lf.TaskDetail(f"{prefix}-{n}"))
            try:
                conn.update_flow_details(flow)
                break
            except lf.ConflictError:
                continue


def save_loop(conn: lf.Connection, flows: int, tasks: int) -> None:
    """Save big books forever, printing each uuid once its save returned."""
    n = 0
    while True:
        book = conn.save_logbook(big_book(f"loop-{n}", flows, tasks, 2048))
        print(book.uuid, flush=True)
        n += 1


def die_before_replace(conn: lf.Connection, replaces: int) -> None:
    """Save a book but SIGKILL this process just before its ``replaces``-th os.replace."""
    real_replace = os.replace
    calls = 0

    def replace(src: Any, dst: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == replaces:
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst)

    os.replace = replace  # type: ignore[assignment]
    book = big_book("doomed", 3, 4, 100)
    print(json.dumps({"book": book.uuid, "flows": [f.uuid for f in book]}), flush=True)
    conn.save_logbook(book)


def too_big(conn: lf.Connection) -> None:
    """Save a book larger than RLIMIT_FSIZE allows: the write fails like a full disk."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    book = big_book("too-big", 1, 2, 2 << 20)
    try:
        conn.save_logbook(book)
    except lf.StorageError as exc:
        cause = exc.__cause__
        out = {
            "error": str(exc),
            "cause": type(cause).__name__,
            "errno": getattr(cause, "errno", 0),
        }
        print(json.dumps({**out, "book": book.uuid}), flush=True)
    else:
        print(json.dumps({"error": None}), flush=True)


def main(argv: list[str]) -> None:
    """Dispatch one command against the store URI."""
    command, uri, *args = argv
    backend = lf.open_backend(uri)
    with backend.connect() as conn:
        if command == "increment":
            increment(conn, args[0], int(args[1]))
        elif command == "add-tasks":
            add_tasks(conn, args[0], args[1], int(args[2]))
        elif command == "save-loop":
            save_loop(conn, int(args[0]), int(args[1]))
        elif command == "die-before-replace":
            die_before_replace(conn, int(args[0]))
        elif command == "too-big":
            too_big(conn)
        else:
            raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
