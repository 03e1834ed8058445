"""The conductor in this process: jobs to a persisted end, stops, refusals, retries."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import ledgerflow as lf
from ledgerflow import states
from ledgerflow.jobs import CANCELLED, CLAIMED, DONE, FAILED, READY, JobBoard

FLOWS = "tests.jobs.job_flows"


@pytest.fixture(params=["memory", "sqlite"])
def local_board(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobBoard]:
    """A memory board (memory logbooks) and a SQLite board."""
    uri = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'b.db'}"
    board = lf.open_board(uri)
    yield board
    board.close()


def _conductor(board: JobBoard, **kwargs: object) -> lf.Conductor:
    options: dict[str, object] = {"lease": 2.0, "poll": 0.05, **kwargs}
    return lf.Conductor(board, **options)  # type: ignore[arg-type]


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_until_idle_runs_every_job_to_done(local_board: JobBoard) -> None:
    jobs = [local_board.post(f"{FLOWS}:one_task", store={"n": n}) for n in range(5)]
    finished: list[str] = []
    conductor = _conductor(
        local_board, workers=2, on_finish=lambda job, state: finished.append(state)
    )
    conductor.run(until_idle=True)
    assert finished == [DONE] * 5 and conductor.counts[DONE] == 5
    for n, job in enumerate(jobs):
        assert local_board.get(job.uuid).state == DONE
        with local_board.backend.connect() as conn:
            flow_detail = conn.get_flow_details(job.flow_uuid)
        assert flow_detail.state == states.SUCCESS
        assert [td.result for td in flow_detail] == [n * 2]


def test_failed_flow_makes_a_failed_job_saying_why(local_board: JobBoard) -> None:
    job = local_board.post(f"{FLOWS}:failing", store={"message": "disk on fire"})
    _conductor(local_board).run(until_idle=True)
    failed = local_board.get(job.uuid)
    assert failed.state == FAILED and failed.attempts == 1
    assert failed.last_error is not None
    assert "REVERTED" in failed.last_error and "disk on fire" in failed.last_error


def test_allow_refuses_other_modules_without_importing(local_board: JobBoard) -> None:
    refused = local_board.post("tests.jobs.not_a_module_anyone_imports:build")
    allowed = local_board.post(f"{FLOWS}:one_task")
    _conductor(local_board, allow=["tests.jobs.job_flows"]).run(until_idle=True)
    job = local_board.get(refused.uuid)
    assert job.state == FAILED and job.last_error is not None
    assert "not allowed" in job.last_error and "nothing was imported" in job.last_error
    assert "tests.jobs.not_a_module_anyone_imports" not in sys.modules
    assert local_board.get(allowed.uuid).state == DONE
    prefixed = local_board.post(f"{FLOWS}:one_task")
    _conductor(local_board, allow=["tests."]).run(until_idle=True)
    assert local_board.get(prefixed.uuid).state == DONE


def test_a_factory_that_cannot_be_imported_fails_the_job(local_board: JobBoard) -> None:
    job = local_board.post("tests.jobs.job_flows:no_such_factory")
    _conductor(local_board).run(until_idle=True)
    failed = local_board.get(job.uuid)
    assert failed.state == FAILED and failed.last_error is not None
    assert "no_such_factory" in failed.last_error


def test_stop_hands_the_job_back_and_it_finishes_later(
    local_board: JobBoard, tmp_path: Path
) -> None:
    marker, release = tmp_path / "marker", tmp_path / "release"
    job = local_board.post(f"{FLOWS}:held", store={"marker": str(marker), "release": str(release)})
    conductor = _conductor(local_board)
    runner = threading.Thread(target=conductor.run)
    runner.start()
    started = Path(str(marker) + ".started")
    _wait_for(started.exists)
    conductor.stop()
    runner.join(timeout=30)
    assert not runner.is_alive()
    back = local_board.get(job.uuid)
    assert (back.state, back.attempts, back.owner) == (READY, 0, None)
    assert conductor.counts["handed back"] == 1
    with local_board.backend.connect() as conn:
        assert conn.get_flow_details(job.flow_uuid).state == states.SUSPENDED
    release.write_text("go")
    _conductor(local_board).run(until_idle=True)
    done = local_board.get(job.uuid)
    assert done.state == DONE and done.attempts == 1
    assert [line.split()[0] for line in _lines(marker)] == ["before", "after"]


def test_cancel_of_a_claimed_job_ends_it_cancelled(local_board: JobBoard, tmp_path: Path) -> None:
    marker, release = tmp_path / "marker", tmp_path / "release"
    job = local_board.post(f"{FLOWS}:held", store={"marker": str(marker), "release": str(release)})
    conductor = _conductor(local_board, lease=0.6)
    runner = threading.Thread(target=conductor.run, kwargs={"until_idle": True})
    runner.start()
    _wait_for(Path(str(marker) + ".started").exists)
    assert local_board.cancel(job.uuid).state == CLAIMED
    runner.join(timeout=30)
    assert not runner.is_alive()
    assert local_board.get(job.uuid).state == CANCELLED
    with local_board.backend.connect() as conn:
        assert conn.get_flow_details(job.flow_uuid).state == states.CANCELLED


def test_retry_runs_the_flow_again_from_the_start(local_board: JobBoard, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    job = local_board.post(f"{FLOWS}:noted", store={"marker": str(marker), "n": 7})
    _conductor(local_board).run(until_idle=True)
    assert local_board.get(job.uuid).state == DONE
    with pytest.raises(ValueError, match="DONE"):
        local_board.retry(job.uuid)
    failing = local_board.post(f"{FLOWS}:failing")
    _conductor(local_board).run(until_idle=True)
    assert local_board.get(failing.uuid).state == FAILED
    again = local_board.retry(failing.uuid)
    assert (again.state, again.attempts) == (READY, 0)
    _conductor(local_board).run(until_idle=True)
    assert local_board.get(failing.uuid).state == FAILED
    with local_board.backend.connect() as conn:
        task = next(iter(conn.get_flow_details(failing.flow_uuid)))
    assert task.attempts == 2  # the task ran again, from a flow reset to its start


def test_until_idle_waits_for_delayed_jobs(local_board: JobBoard) -> None:
    job = local_board.post(f"{FLOWS}:one_task", delay=0.3)
    _conductor(local_board).run(until_idle=True)
    done = local_board.get(job.uuid)
    assert done.state == DONE


def test_bad_arguments() -> None:
    board = lf.open_board("memory://")
    with pytest.raises(ValueError, match="workers"):
        lf.Conductor(board, workers=0)
    with pytest.raises(ValueError, match="lease"):
        lf.Conductor(board, lease=0)
    with pytest.raises(TypeError, match="board"):
        lf.Conductor("memory://")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="allow"):
        lf.Conductor(board, allow=[3])  # type: ignore[list-item]
    first, second = lf.Conductor(board, name="x"), lf.Conductor(board, name="x")
    assert first.owner != second.owner


def _wait_for(condition: object, timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)
