"""300 one-task jobs end to end on PostgreSQL with 2 conductor processes.

Run as ``python benchmarks/jobs_bench.py [JOBS]``.  The conductors start first and sit
idle (LISTEN); the clock runs from the first post to the moment the last job is DONE,
posting included.  Target (issue 9): about 200 jobs/s, >= 10x TaskFlow 6.5.0 with its
Redis board, run in the same process tree right after (benchmarks/taskflow_jobs.py in
TaskFlow's venv, TASKFLOW_PYTHON, default /work/tfvenv/bin/python: 2 blocking
conductors, PostgreSQL logbooks, Redis database 14).  Never asserts a timing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from board_bench import pg_database  # noqa: E402  (this folder: a private database)

import ledgerflow as lf  # noqa: E402

FACTORY = "tests.jobs.job_flows:one_task"
TASKFLOW_PYTHON = os.environ.get("TASKFLOW_PYTHON", "/work/tfvenv/bin/python")
CONDUCTORS = 2


def taskflow(jobs: int) -> tuple[float, int] | str:
    """(seconds, flows SUCCESS) of TaskFlow's run, or why it did not run."""
    if not Path(TASKFLOW_PYTHON).exists():
        return f"no TaskFlow venv at {TASKFLOW_PYTHON}"
    with pg_database() as uri:
        script = ROOT / "benchmarks" / "taskflow_jobs.py"
        args = [TASKFLOW_PYTHON, str(script), uri, "14", str(jobs), str(CONDUCTORS)]
        env = dict(os.environ, PYTHONPATH=str(script.parent))
        run = subprocess.run(args, capture_output=True, text=True, env=env, timeout=1200)
    if run.returncode != 0:
        return f"TaskFlow failed: {run.stderr.strip().splitlines()[-1:]}"
    seconds, done = run.stdout.split()[-2:]
    return float(seconds), int(done)


def main() -> None:
    """Start 2 conductors, post the jobs, wait for the last DONE, print jobs/s."""
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]))
    with pg_database() as uri:
        board = lf.open_board(uri)
        conductors = [
            subprocess.Popen(
                [sys.executable, "-m", "ledgerflow", "--backend", uri, "conductor",
                 "--workers", "4", "--poll", "1.0"],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
            )
            for _ in range(CONDUCTORS)
        ]  # fmt: skip
        time.sleep(3.0)  # both conductors imported and listening (a benchmark, not a test)
        start = time.perf_counter()
        for n in range(jobs):
            board.post(FACTORY, store={"n": n})
        posted = time.perf_counter() - start
        while len(board.jobs(state="DONE")) < jobs:
            time.sleep(0.01)
        elapsed = time.perf_counter() - start
        for process in conductors:
            process.send_signal(signal.SIGTERM)
        for process in conductors:
            process.wait(timeout=60)
        board.close()
    rate = jobs / elapsed
    print(
        f"ledgerflow: {jobs} one-task jobs, {CONDUCTORS} conductors x 4 workers, PostgreSQL board"
    )
    print(f"  posting {posted:.2f} s; first post to last DONE {elapsed:.2f} s = {rate:.0f} jobs/s")
    print(f"  vs the 200 jobs/s target: {rate / 200:.2f}x", flush=True)
    rival = taskflow(jobs)
    if isinstance(rival, str):
        print(f"TaskFlow 6.5.0 side: not run ({rival})")
        return
    seconds, done = rival
    rival_rate = jobs / seconds
    print(
        f"TaskFlow 6.5.0: {jobs} jobs, {CONDUCTORS} blocking conductors, Redis board, "
        f"PostgreSQL logbooks: {seconds:.2f} s = {rival_rate:.1f} jobs/s ({done} flows SUCCESS)"
    )
    print(f"ledgerflow / TaskFlow: {rate / rival_rate:.1f}x (target >= 10x)")


if __name__ == "__main__":
    main()
