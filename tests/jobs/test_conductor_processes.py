"""Conductors as real processes on PostgreSQL: kill -9, SIGSTOP, dead letters, contention."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest

import ledgerflow as lf
from ledgerflow.jobs import DONE, FAILED, JobBoard

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
FLOWS = "tests.jobs.job_flows"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    env.pop("LEDGERFLOW_BACKEND", None)
    return env


def _conductor(uri: str, *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "ledgerflow", "--backend", uri, "conductor"]
    return subprocess.Popen(
        [*command, "--lease", "1.5", "--poll", "0.1", *args],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def _finish(process: subprocess.Popen[str], timeout: float = 120) -> tuple[str, str]:
    out, err = process.communicate(timeout=timeout)
    return out, err


def _held_job(board: JobBoard, tmp_path: Path) -> tuple[lf.Job, Path, Path]:
    marker, release = tmp_path / "marker", tmp_path / "release"
    job = board.post(f"{FLOWS}:held", store={"marker": str(marker), "release": str(release)})
    return job, marker, release


def test_kill_9_mid_task_finishes_once_elsewhere(
    pg_board: JobBoard, postgres_uri: str, tmp_path: Path
) -> None:
    job, marker, release = _held_job(pg_board, tmp_path)
    first = _conductor(postgres_uri)
    started = Path(str(marker) + ".started")
    _wait_for(started.exists)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    release.write_text("go")
    second = _conductor(postgres_uri, "--until-idle")
    out, err = _finish(second)
    assert second.returncode == 0, err
    done = pg_board.get(job.uuid)
    assert (done.state, done.attempts) == (DONE, 2)
    lines = marker.read_text().splitlines()
    assert lines == [f"before {first.pid}", f"after {second.pid}"]  # only `hold` ran again
    assert job.uuid in out and "DONE" in out


def test_sigstop_past_the_lease_then_sigcont_is_refused(
    pg_board: JobBoard, postgres_uri: str, tmp_path: Path
) -> None:
    job, marker, release = _held_job(pg_board, tmp_path)
    stale = _conductor(postgres_uri, "--name", "stale")
    _wait_for(Path(str(marker) + ".started").exists)
    os.kill(stale.pid, signal.SIGSTOP)
    try:
        release.write_text("go")
        _wait_for(lambda: pg_board.idle().lapsed == 1)  # the stalled claim ran out
        fresh = _conductor(postgres_uri, "--until-idle", "--name", "fresh")
        _, fresh_err = _finish(fresh)
        assert fresh.returncode == 0, fresh_err
        done = pg_board.get(job.uuid)
        assert (done.state, done.attempts, done.owner) == (DONE, 2, None)
    finally:
        os.kill(stale.pid, signal.SIGCONT)
    with pg_board.backend.connect() as conn:
        fence = conn.get_ownership(job.flow_uuid).fence
    # The stale conductor's heartbeat, writes and completion are all refused: it leaves
    # the job to its new owner (it says so on stderr) and stops when asked.
    stale.send_signal(signal.SIGTERM)
    stale_out, stale_err = _finish(stale)
    assert stale.returncode == 0, stale_err
    assert "taken over" in stale_err or "FencedOut" in stale_err or "fenced" in stale_err
    after = pg_board.get(job.uuid)
    assert (after.state, after.attempts, after.owner) == (DONE, 2, None)
    with pg_board.backend.connect() as conn:
        assert conn.get_ownership(job.flow_uuid).fence == fence
        flow_detail = conn.get_flow_details(job.flow_uuid)
    assert flow_detail.state == lf.states.SUCCESS
    assert [line.split()[0] for line in marker.read_text().splitlines()] == ["before", "after"]
    assert str(stale.pid) not in marker.read_text().splitlines()[1]
    assert "DONE" not in stale_out


def test_a_job_that_kills_its_conductor_ends_failed_after_max_attempts(
    pg_board: JobBoard, postgres_uri: str
) -> None:
    job = pg_board.post(f"{FLOWS}:killer", max_attempts=2)
    runs = 0
    while pg_board.get(job.uuid).state != FAILED:
        runs += 1
        assert runs <= 4, "the job never reached its dead letter"
        process = _conductor(postgres_uri, "--until-idle")
        _finish(process)
    dead = pg_board.get(job.uuid)
    assert dead.attempts == 2 and runs == 3
    assert dead.last_error is not None and "max_attempts" in dead.last_error


def _post_same_key(uri: str, start: float, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    board = lf.open_board(uri)
    while time.time() < start:
        time.sleep(0.001)
    uuids = {board.post(f"{FLOWS}:one_task", key="only-once").uuid for _ in range(10)}
    board.close()
    queue.put(sorted(uuids))


def test_dedup_priority_and_delay_under_four_conductors(
    pg_board: JobBoard, postgres_uri: str, tmp_path: Path
) -> None:
    context = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue = context.Queue()  # type: ignore[type-arg]
    start = time.time() + 2.0
    posters = [
        context.Process(target=_post_same_key, args=(postgres_uri, start, queue)) for _ in range(4)
    ]
    for poster in posters:
        poster.start()
    seen = {uuid for _ in posters for uuid in queue.get(timeout=60)}
    for poster in posters:
        poster.join()
    assert len(seen) == 1
    marker = tmp_path / "marker"
    delayed = []
    for n in range(24):
        priority = 9 if n % 4 == 0 else 0
        pg_board.post(f"{FLOWS}:noted", store={"marker": str(marker), "n": n}, priority=priority)
    for n in range(100, 103):
        delayed.append(
            pg_board.post(f"{FLOWS}:noted", store={"marker": str(marker), "n": n}, delay=1.5)
        )
    conductors = [_conductor(postgres_uri, "--until-idle") for _ in range(4)]
    for process in conductors:
        _, err = _finish(process)
        assert process.returncode == 0, err
    assert {job.state for job in pg_board.jobs()} == {DONE}
    per_conductor: dict[str, list[int]] = defaultdict(list)
    for line in marker.read_text().splitlines():
        pid, n = line.split()
        per_conductor[pid].append(int(n))
    ran = Counter(n for numbers in per_conductor.values() for n in numbers)
    assert ran == Counter([*range(24), 100, 101, 102])
    for numbers in per_conductor.values():
        # Each conductor claims one job at a time: its own order is the board's order,
        # higher priority first, then posting order (the delayed ones last).
        prompt = [n for n in numbers if n < 100]
        keys = [(-(9 if n % 4 == 0 else 0), n) for n in prompt]
        assert keys == sorted(keys), numbers
    with pg_board.backend.connect() as conn:
        for job in delayed:
            task = next(iter(conn.get_flow_details(job.flow_uuid)))
            assert task.started_at is not None and task.started_at >= job.available_at


def test_a_thousand_jobs_across_four_conductors_each_done_once(
    pg_board: JobBoard, postgres_uri: str, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    jobs = [
        pg_board.post(f"{FLOWS}:noted", store={"marker": str(marker), "n": n}) for n in range(1000)
    ]
    conductors = [_conductor(postgres_uri, "--until-idle", "--workers", "2") for _ in range(4)]
    outputs = []
    for process in conductors:
        out, err = _finish(process, timeout=600)
        assert process.returncode == 0, err
        outputs.append(out)
    assert {job.state for job in pg_board.jobs()} == {DONE}
    assert all(pg_board.get(job.uuid).attempts == 1 for job in jobs[:50])
    ran = Counter(int(line.split()[1]) for line in marker.read_text().splitlines())
    assert ran == Counter(range(1000))
    finished = sum(out.count("DONE ") for out in outputs)
    assert finished == 1000
