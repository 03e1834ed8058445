"""One timed run of N no-op tasks on a SQLite file, in a fresh process (see rivals_bench.py).

Usage: python rival_run.py SYSTEM PATH N   (SYSTEM: ledgerflow, taskflow, dbos or sqlite3)
Prints the seconds the run took (not the interpreter's start, imports or set-up).
Each system runs in its own venv; only its own package is imported.
"""

import os
import sys
import time


def ledgerflow(path, size):
    sys.path.insert(0, sys.argv[4] if len(sys.argv) > 4 else "src")
    import ledgerflow as lf

    class Noop(lf.Task):
        def execute(self):
            return None

    flow = lf.LinearFlow("bench", *(Noop(name=f"t{i}") for i in range(size)))
    engine = lf.load(flow, backend=f"sqlite:///{path}", save="always")
    start = time.perf_counter()
    engine.run()
    return time.perf_counter() - start


def raw_sqlite3(path, size):
    """The floor: bare sqlite3, one committed UPDATE of a task-sized row per task."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from engine_bench import raw_sqlite_update

    return raw_sqlite_update(path, size, wide=True, passes=1)[0]


def taskflow(path, size):
    import contextlib

    from taskflow import engines, task
    from taskflow.patterns import linear_flow
    from taskflow.persistence import backends

    class Noop(task.Task):
        def execute(self):
            return None

    backend = backends.fetch({"connection": f"sqlite:///{path}"})
    with contextlib.closing(backend.get_connection()) as conn:
        conn.upgrade()
    flow = linear_flow.Flow("f").add(*(Noop(f"t{i}") for i in range(size)))
    engine = engines.load(flow, backend=backend)
    engine.compile()
    engine.prepare()
    start = time.perf_counter()
    engine.run()
    return time.perf_counter() - start


def dbos(path, size):
    from dbos import DBOS

    DBOS(config={"name": "bench", "system_database_url": f"sqlite:///{path}"})

    @DBOS.step()
    def noop():
        return None

    @DBOS.workflow()
    def flow(n):
        for _ in range(n):
            noop()

    DBOS.launch()
    start = time.perf_counter()
    flow(size)
    elapsed = time.perf_counter() - start
    DBOS.destroy()
    return elapsed


if __name__ == "__main__":
    system, file_path, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print(
        repr(
            {
                "ledgerflow": ledgerflow,
                "taskflow": taskflow,
                "dbos": dbos,
                "sqlite3": raw_sqlite3,
            }[system](file_path, count)
        )
    )
