"""Crash tests: a child process is killed with SIGKILL, a new process resumes.

Executions are logged to an append-only file (O_APPEND + fsync) by the tasks
themselves, so the log survives the kill.  After each kill we read which tasks
the store holds as SUCCESS: none of them may start again later.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import ledgerflow as lf
from ledgerflow import states
from tests.engine import flows_for_crash

ROOT = Path(__file__).resolve().parents[2]
CHAIN_TOTAL = sum(range(1, flows_for_crash.CHAIN_LENGTH + 1))


def child(args: list[str], log: Path, **env: str) -> subprocess.Popen[str]:
    """Start ``python -m tests.engine.flows_for_crash ARGS`` in a new process."""
    environment = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}",
        "LEDGERFLOW_TEST_LOG": str(log),
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tests.engine.flows_for_crash", *args],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> dict[str, int]:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    result: dict[str, int] = json.loads(out.strip().splitlines()[-1])
    return result


def stored(uri: str, flow_uuid: str) -> lf.FlowDetail:
    with lf.open_backend(uri) as backend, backend.connect() as conn:
        return conn.get_flow_details(flow_uuid)


def log_lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def wait_for_lines(log: Path, count: int, proc: subprocess.Popen[str]) -> None:
    """Block until the child has logged ``count`` lines in all, or exited."""
    deadline = time.monotonic() + 120
    while len(log_lines(log)) < count and proc.poll() is None:
        assert time.monotonic() < deadline, f"the child logged {len(log_lines(log))} lines"
        time.sleep(0.002)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'crash.db'}"
    uri: str = request.getfixturevalue("postgres_uri")
    return uri


@pytest.mark.slow
def test_kill_inside_a_task_then_resume_in_new_process(store_uri: str, tmp_path: Path) -> None:
    log, uuid_file = tmp_path / "exec.log", tmp_path / "uuid"
    proc = child(["run", store_uri, "chain", str(uuid_file)], log, LEDGERFLOW_TEST_KILL_AT="step5")
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    flow_uuid = uuid_file.read_text()
    before = stored(store_uri, flow_uuid)
    done = {t.name for t in before if t.state == states.SUCCESS}
    assert done == {f"step{i}" for i in range(1, 5)}
    killed = before.find_by_name("step5")
    assert killed is not None and killed.state == states.RUNNING
    assert [t["state"] for t in killed.tries] == [states.RUNNING]
    offset = len(log_lines(log))

    result = finish(child(["resume", store_uri, flow_uuid], log))
    assert result[f"total{flows_for_crash.CHAIN_LENGTH}"] == CHAIN_TOTAL
    later = log_lines(log)[offset:]
    assert not [line for line in later if line.split()[1] in done]
    assert later[0] == "start step5"
    after = stored(store_uri, flow_uuid)
    assert after.state == states.SUCCESS
    resumed = after.find_by_name("step5")
    assert resumed is not None and resumed.attempts == len(resumed.tries) == 2
    died, rerun = resumed.tries
    assert died["state"] == states.FAILURE and died["failure"].matches(lf.ProcessDied)
    assert "died" in died["failure"].message
    assert rerun["state"] == states.SUCCESS and rerun["failure"] is None


@pytest.mark.slow
def test_kill_at_random_moments(store_uri: str, tmp_path: Path) -> None:
    rng = random.Random(1234)
    log, uuid_file = tmp_path / "exec.log", tmp_path / "uuid"
    forbidden: set[str] = set()
    flow_uuid: str | None = None
    kills = 0
    for _round in range(4):
        if flow_uuid is None:
            args = ["run", store_uri, "chain", str(uuid_file)]
        else:
            args = ["resume", store_uri, flow_uuid]
        offset = len(log_lines(log))
        proc = child(args, log, LEDGERFLOW_TEST_SLEEP="0.03")
        # A random moment measured in the child's own progress, not in wall-clock time:
        # right after its n-th logged step event (inside a task, or between a task's
        # end and its SUCCESS being stored), however slow the machine is.
        wait_for_lines(log, offset + rng.randint(1, 7), proc)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=120)
        kills += proc.returncode == -signal.SIGKILL
        started = [line.split()[1] for line in log_lines(log)[offset:] if line.startswith("start")]
        assert not forbidden & set(started), "a task stored as SUCCESS ran again"
        if flow_uuid is None and uuid_file.exists():
            flow_uuid = uuid_file.read_text()
        if flow_uuid is not None:
            forbidden |= {t.name for t in stored(store_uri, flow_uuid) if t.state == "SUCCESS"}
    assert kills, "every child finished before it could be killed"
    assert flow_uuid is not None, "the child never got as far as saving its flow"
    offset = len(log_lines(log))
    result = finish(child(["resume", store_uri, flow_uuid], log))
    assert result[f"total{flows_for_crash.CHAIN_LENGTH}"] == CHAIN_TOTAL
    started = [line.split()[1] for line in log_lines(log)[offset:] if line.startswith("start")]
    assert not forbidden & set(started)
    every = [line.split()[1] for line in log_lines(log) if line.startswith("done")]
    assert set(every) == {f"step{i}" for i in range(1, flows_for_crash.CHAIN_LENGTH + 1)}
    assert stored(store_uri, flow_uuid).state == states.SUCCESS


@pytest.mark.slow
def test_checkpoint_survives_a_crash(store_uri: str, tmp_path: Path) -> None:
    log, uuid_file = tmp_path / "exec.log", tmp_path / "uuid"
    proc = child(
        ["run", store_uri, "counting", str(uuid_file)], log, LEDGERFLOW_TEST_KILL_AT="count"
    )
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    flow_uuid = uuid_file.read_text()
    assert stored(store_uri, flow_uuid).find_by_name("count_to_five").checkpoint == 3  # type: ignore[union-attr]
    assert finish(child(["resume", store_uri, flow_uuid], log)) == {"counted": 5}
    assert log_lines(log) == ["count from 0", "count from 3"]


@pytest.mark.slow
def test_retry_budget_survives_a_kill_during_the_backoff(store_uri: str, tmp_path: Path) -> None:
    log, uuid_file = tmp_path / "exec.log", tmp_path / "uuid"
    proc = child(
        ["run", store_uri, "flaky_retry", str(uuid_file)], log, LEDGERFLOW_TEST_BACKOFF="60"
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # wait for the first failed try to be stored, then kill in the backoff
            assert time.monotonic() < deadline, "the first try was never stored as RETRYING"
            if uuid_file.exists():
                task = stored(store_uri, uuid_file.read_text()).find_by_name("flaky")
                if task is not None and task.state == states.RETRYING:
                    break
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    assert log_lines(log) == ["try flaky"]
    resumed = child(["resume", store_uri, uuid_file.read_text()], log)
    _, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 1 and "FlowFailed" in err
    assert log_lines(log) == ["try flaky"] * 3  # 3 executions in all, as Retry(attempts=3) says
    task = stored(store_uri, uuid_file.read_text()).find_by_name("flaky")
    assert task is not None and task.attempts == 3 and task.state == states.REVERTED
