"""Take-over latency: how soon a new engine runs a flow whose owner died or stalled.

Prints figures, never asserts.  From the repository root:

    python benchmarks/takeover_bench.py

(a) SIGKILL: a child process runs a flow and is killed inside a task; this process
    resumes at once.  Latency = from the kill to the resumed engine's first commit
    (the flow taken, the task RUNNING again).  Target <= 0.2 s.
(b) stall: the child is SIGSTOPped inside a task (lease 1 s); this process resumes with
    wait=.  Latency = from the stop to that first commit.  Target <= lease + 0.2 s.
Each on a SQLite file and, when reachable, PostgreSQL (BENCH_PG_URI, default the local
server's postgres database is not used: set BENCH_PG_URI to measure it).  The resuming
process has used the store kind before (its driver and SQLAlchemy imported), as a
supervisor that resumes flows has; the cost of a first resume in a fresh process (the
imports, about 0.3 s for SQLAlchemy) is printed apart.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

import ledgerflow as lf  # noqa: E402

LEASE = 1.0
ROUNDS = int(os.environ.get("BENCH_TAKEOVER_ROUNDS", "5"))


def _child(uri: str, started: Path, go: Path, uuid_file: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    args = ["stall", uri, str(started), str(go), str(uuid_file)]
    return subprocess.Popen(
        [sys.executable, "-m", "tests.engine.flows_for_signals", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def one(uri: str, directory: Path, how: int, index: int) -> float:
    """Seconds from ``how`` (SIGKILL or SIGSTOP) to the new owner's first commit."""
    started, go = directory / f"started{index}", directory / f"go{index}"
    uuid_file = directory / f"uuid{index}"
    proc = _child(uri, started, go, uuid_file)
    while not started.exists():
        time.sleep(0.005)
    go.touch()  # the resumed run's `slow` returns at once
    proc.send_signal(how)
    stopped = time.perf_counter()
    first: list[float] = []

    def heard(event: lf.StateChange) -> None:
        if not first:
            first.append(time.perf_counter())

    try:
        lf.resume(uri, uuid_file.read_text(), wait=30, on_change=heard)
    finally:
        if how == signal.SIGSTOP:
            proc.send_signal(signal.SIGCONT)
        proc.wait(timeout=60)
    return first[0] - stopped


def cold_resume(directory: Path) -> float:
    """Seconds from a fresh process's ``lf.resume`` (owner killed) to its first commit."""
    code = (
        "import sys, time\n"
        "import ledgerflow as lf\n"
        "first = []\n"
        "start = time.perf_counter()\n"
        "lf.resume(sys.argv[1], sys.argv[2], wait=30,\n"
        "          on_change=lambda e: first or first.append(time.perf_counter()))\n"
        "print(first[0] - start)\n"
    )
    uri = f"sqlite:///{directory / 'cold.db'}"
    started, go, uuid_file = (
        directory / "cold-started",
        directory / "cold-go",
        directory / "cold-uuid",
    )
    proc = _child(uri, started, go, uuid_file)
    while not started.exists():
        time.sleep(0.005)
    go.touch()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    out = subprocess.run(
        [sys.executable, "-c", code, uri, uuid_file.read_text()],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        uris = [("sqlite", lambda i: f"sqlite:///{directory / f'takeover{i}.db'}")]
        pg = os.environ.get("BENCH_PG_URI")
        if pg:
            uris.append(("postgresql", lambda i: pg))
        counter = iter(range(1_000_000))
        print(f"first resume in a fresh process: {cold_resume(directory):.3f} s (imports included)")
        for name, uri in uris:
            warm = lf.open_backend(uri(next(counter)))  # import the driver, as a user has
            warm.close()
            for label, how, target in (
                ("after SIGKILL", signal.SIGKILL, 0.2),
                (f"after a stall past a {LEASE:g} s lease", signal.SIGSTOP, LEASE + 0.2),
            ):
                figures = [one(uri(n := next(counter)), directory, how, n) for _ in range(ROUNDS)]
                print(
                    f"{name:10} take-over {label}: best {min(figures):.3f} s, "
                    f"worst {max(figures):.3f} s over {ROUNDS}   target <= {target:.1f} s"
                )


if __name__ == "__main__":
    main()
