"""Failover: how soon another conductor takes a job whose conductor died or stopped.

Run as ``python benchmarks/failover_bench.py [ROUNDS]``.  Two conductor processes
(lease 2 s, poll 0.5 s) share a board; the first claims a job whose task holds until
released.  Then:
(a) kill -9 of the first: time from the kill to the second's claim (the job's owner
    changes) and to the task running again there.  Target <= lease + one poll (2.5 s).
(b) SIGTERM of the first (graceful stop: the task honours stop_requested, the job is
    handed back and the idle conductor woken): time from the signal to the second's
    claim.  Target <= 1 s.
On PostgreSQL (a private database) and Redis (database 13, logbooks on PostgreSQL).
Prints figures, never asserts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from board_bench import pg_database, redis_board_uri  # noqa: E402

import ledgerflow as lf  # noqa: E402

LEASE, POLL = 2.0, 0.5
FACTORY = "tests.jobs.job_flows:held"


def _conductor(backend: str, board: str, name: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]))
    command = [sys.executable, "-m", "ledgerflow", "--backend", backend, "conductor"]
    options = ["--board", board, "--lease", str(LEASE), "--poll", str(POLL), "--name", name]
    return subprocess.Popen(
        [*command, *options],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _until(condition: Callable[[], bool], timeout: float = 60.0) -> float:
    """Poll ``condition`` every millisecond; the moment it held (perf_counter)."""
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            raise TimeoutError("the other conductor never took the job")
        time.sleep(0.001)
    return time.perf_counter()


def _owner(board: lf.JobBoard, uuid: str) -> str:
    with contextlib.suppress(lf.StorageError):
        return board.get(uuid).owner or ""
    return ""


def one_round(board: lf.JobBoard, board_uri: str, backend: str, kill: bool) -> tuple[float, float]:
    """(seconds to the other's claim, seconds to the task running there) for one round."""
    with tempfile.TemporaryDirectory() as tmp:
        marker, release = Path(tmp) / "marker", Path(tmp) / "release"
        started = Path(str(marker) + ".started")
        first = _conductor(backend, board_uri, "first")
        job = board.post(FACTORY, store={"marker": str(marker), "release": str(release)})
        _until(started.exists)
        second = _conductor(backend, board_uri, "second")
        time.sleep(3.0)  # the second imported and idle (a benchmark, not a test)
        started.unlink()
        begun = time.perf_counter()
        first.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        claimed = _until(lambda: "second" in _owner(board, job.uuid))
        running = _until(started.exists)
        release.write_text("go")
        board.wait(job.uuid, timeout=60)
        for process in (first, second):
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    return claimed - begun, running - begun


def measure(label: str, board_uri: str, backend: str, rounds: int) -> None:
    """Print kill -9 and graceful-stop failover figures for one board."""
    board = lf.open_board(board_uri, backend=None if board_uri == backend else backend)
    for kill, what, target in ((True, "kill -9", LEASE + POLL), (False, "SIGTERM", 1.0)):
        figures = [one_round(board, board_uri, backend, kill) for _ in range(rounds)]
        claims = ", ".join(f"{c:.2f}" for c, _ in figures)
        runs = ", ".join(f"{r:.2f}" for _, r in figures)
        worst = max(c for c, _ in figures)
        print(
            f"{label:<11} {what:<8} claimed elsewhere after {claims} s (worst {worst:.2f} s, "
            f"target <= {target:.1f} s: {worst / target:.2f}x); task running again after "
            f"{runs} s",
            flush=True,
        )
    board.close()


@contextlib.contextmanager
def _boards() -> Iterator[list[tuple[str, str, str]]]:
    with pg_database() as pg, pg_database() as logbooks, redis_board_uri() as redis_uri:
        yield [("PostgreSQL", pg, pg), ("Redis", redis_uri, logbooks)]


def main() -> None:
    """Measure each board."""
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    print(f"failover: lease {LEASE} s, poll {POLL} s, {rounds} rounds each")
    with _boards() as boards:
        for label, board_uri, backend in boards:
            measure(label, board_uri, backend, rounds)


if __name__ == "__main__":
    main()
