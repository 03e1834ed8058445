"""TaskFlow 6.5.0's side of jobs_bench.py: one-task jobs on its Redis job board, run by
blocking conductors over PostgreSQL logbooks.  Runs in TaskFlow's own venv.

Usage: python taskflow_jobs.py POSTGRES_URI REDIS_DB JOBS CONDUCTORS
Prints "SECONDS DONE": first post to the board's last job consumed, posting included,
and how many flows the logbooks hold SUCCESS.  Never asserts a timing.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid

NAMESPACE = "lf-bench-taskflow"


def one_task():
    """The flow each job runs: one task that doubles ``n`` (as ledgerflow's one_task)."""
    from taskflow import task
    from taskflow.patterns import linear_flow

    class Double(task.Task):
        default_provides = "doubled"

        def execute(self, n):
            return n * 2

    return linear_flow.Flow("one-task").add(Double("double"))


def _persistence(uri):
    from taskflow.persistence import backends

    return backends.fetch({"connection": uri.replace("postgresql://", "postgresql+psycopg2://")})


def _board(redis_db, persistence):
    from taskflow.jobs import backends

    conf = {"board": "redis", "host": "127.0.0.1", "port": 6379, "db": redis_db}
    board = backends.fetch("bench", {**conf, "namespace": NAMESPACE}, persistence=persistence)
    board.connect()
    return board


def conduct(uri, redis_db):
    """One blocking conductor until SIGTERM."""
    from taskflow.conductors import backends

    persistence = _persistence(uri)
    board = _board(redis_db, persistence)
    conductor = backends.fetch(
        "blocking",
        f"conductor-{os.getpid()}",
        board,
        persistence=persistence,
        engine="serial",
        wait_timeout=0.01,
    )
    signal.signal(signal.SIGTERM, lambda *_: conductor.stop())
    conductor.connect()
    conductor.run()
    conductor.close()
    board.close()


def main(uri, redis_db, jobs, conductors):
    """Start the conductors, post the jobs, wait until the board is empty."""
    import redis
    import taskflow_jobs  # this file by its module name: conductors import the factory
    from taskflow.engines import helpers
    from taskflow.persistence import models

    redis.Redis(db=redis_db).flushdb()
    persistence = _persistence(uri)
    with contextlib.closing(persistence.get_connection()) as conn:
        conn.upgrade()
    board = _board(redis_db, persistence)
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=here)
    processes = [
        subprocess.Popen([sys.executable, __file__, "conduct", uri, str(redis_db)], env=env)
        for _ in range(conductors)
    ]
    time.sleep(3.0)  # conductors imported and waiting (a benchmark, not a test)
    start = time.perf_counter()
    for n in range(jobs):
        book = models.LogBook(f"job-{n}")
        flow_detail = models.FlowDetail(f"job-{n}", str(uuid.uuid4()))
        book.add(flow_detail)
        with contextlib.closing(persistence.get_connection()) as conn:
            conn.save_logbook(book)
        helpers.save_factory_details(flow_detail, taskflow_jobs.one_task, (), {}, persistence)
        board.post(f"job-{n}", book=book, details={"store": {"n": n}})
    while board.job_count > 0:
        time.sleep(0.01)
    elapsed = time.perf_counter() - start
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        process.wait(timeout=60)
    with contextlib.closing(persistence.get_connection()) as conn:
        done = sum(1 for book in conn.get_logbooks() for fd in book if fd.state == "SUCCESS")
    board.close()
    redis.Redis(db=redis_db).flushdb()
    print(f"{elapsed:.3f} {done}")


if __name__ == "__main__":
    if sys.argv[1] == "conduct":
        conduct(sys.argv[2], int(sys.argv[3]))
    else:
        main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
