"""Every try recorded in ``td.tries``: attempt, times, state and failure, in the same commit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import ledgerflow as lf
from ledgerflow import states


class FailsTwice(lf.Task):
    """Fails its first two executions with ConnectionError, then returns 'ok'."""

    calls = 0

    def execute(self) -> str:
        type(self).calls += 1
        if type(self).calls <= 2:
            raise ConnectionError(f"gateway down (call {type(self).calls})")
        return "ok"


@pytest.fixture(autouse=True)
def _reset() -> None:
    FailsTwice.calls = 0


def _flow(backoff: float = 0.02, attempts: int = 3) -> lf.Flow:
    retry = lf.Retry(attempts=attempts, backoff=backoff)
    return lf.LinearFlow("f", FailsTwice(name="flaky", retry=retry))


def _stored_task(uri: Any, flow_uuid: str, name: str) -> lf.TaskDetail:
    with lf.open_backend(uri) as backend, backend.connect() as conn:
        task = conn.get_flow_details(flow_uuid).find_by_name(name)
    assert task is not None
    return task


def test_each_try_is_recorded_with_its_failure_times_and_backoff(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 't.db'}"
    engine = lf.load(_flow(), backend=uri)
    assert engine.run() == {}
    task = _stored_task(uri, engine.flow_detail.uuid, "flaky")
    assert task.attempts == len(task.tries) == 3
    assert [t["attempt"] for t in task.tries] == [1, 2, 3]
    assert [t["state"] for t in task.tries] == [states.FAILURE, states.FAILURE, states.SUCCESS]
    first, second, third = task.tries
    assert first["failure"].matches(ConnectionError)
    assert first["failure"].message == "gateway down (call 1)"
    assert second["failure"].message == "gateway down (call 2)"
    assert third["failure"] is None and task.failure is None
    for entry in task.tries:
        assert entry["started_at"] <= entry["finished_at"]
    # The backoffs are visible between tries: 0.02 s, then 0.04 s at least.
    assert (second["started_at"] - first["finished_at"]).total_seconds() >= 0.02
    assert (third["started_at"] - second["finished_at"]).total_seconds() >= 0.04
    assert third["started_at"] == task.started_at and third["finished_at"] == task.finished_at


def test_a_task_that_fails_for_good_keeps_every_try(tmp_path: Path) -> None:
    engine = lf.load(_flow(attempts=2), backend=f"sqlite:///{tmp_path / 'g.db'}")
    with pytest.raises(lf.FlowFailed):
        engine.run()
    task = engine.flow_detail.find_by_name("flaky")
    assert task is not None and task.state == states.REVERTED
    assert [t["state"] for t in task.tries] == [states.FAILURE, states.FAILURE]
    assert task.tries[-1]["failure"] == task.failure


class Recording(lf.Backend):
    """A memory backend that keeps a copy of every task detail each commit writes."""

    def __init__(self) -> None:
        super().__init__("memory://")
        self.inner = lf.open_backend("memory://")
        self.commits: list[list[lf.TaskDetail]] = []

    def connect(self) -> lf.Connection:
        conn = self.inner.connect()
        # The engine commits through update_details, and through commit_details when a
        # commit also inserts tasks or lets go of the flow (its last one).
        for name in ("update_details", "commit_details"):
            setattr(conn, name, self._recorded(getattr(conn, name)))
        return conn

    def _recorded(self, original: Any) -> Any:
        def recorded(*details: Any, **options: Any) -> None:
            self.commits.append([d.copy() for d in details if isinstance(d, lf.TaskDetail)])
            original(*details, **options)

        return recorded


def test_a_try_ends_in_the_commit_of_the_state_change_that_ends_it() -> None:
    backend = Recording()
    lf.run(_flow(backoff=0.001), backend=backend)
    written = [task for commit in backend.commits for task in commit]
    ending = {states.SUCCESS: states.SUCCESS, states.RETRYING: states.FAILURE}
    for task in written:
        last = task.tries[-1]
        assert last["attempt"] == task.attempts == len(task.tries)
        assert last["state"] == ending.get(task.state, states.RUNNING), task
    assert [t.state for t in written] == [
        states.RUNNING,
        states.RETRYING,
        states.RUNNING,
        states.RETRYING,
        states.RUNNING,
        states.SUCCESS,
    ]


def test_recording_tries_adds_no_commit() -> None:
    backend = Recording()
    lf.run(_flow(backoff=0.001), backend=backend)
    # Each of the three tries: its RUNNING, then its end (with the next RUNNING after a
    # backoff wait, which syncs on its own), then the flow's end.
    assert len(backend.commits) == 6


def test_a_running_try_found_on_resume_is_closed_as_its_process_died() -> None:
    backend = lf.open_backend("memory://")
    engine = lf.load(_flow(backoff=0.001), backend=backend)
    flow_uuid = engine.flow_detail.uuid
    with backend.connect() as conn:
        # What a process killed inside the first try leaves behind.
        stored = conn.get_flow_details(flow_uuid)
        stored.state = states.RUNNING
        task = stored.tasks[0]
        task.state, task.attempts = states.RUNNING, 1
        task.started_at = lf.TaskDetail("x").created_at
        task.tries = [
            {
                "attempt": 1,
                "started_at": task.started_at,
                "finished_at": None,
                "state": states.RUNNING,
                "failure": None,
            }
        ]
        conn.update_details(stored, task)
    FailsTwice.calls = 1  # that try counted as the first call
    lf.resume(backend, flow_uuid, flow=_flow(backoff=0.001))
    task = _stored_task_from(backend, flow_uuid)
    assert [t["state"] for t in task.tries] == [states.FAILURE, states.FAILURE, states.SUCCESS]
    died = task.tries[0]["failure"]
    assert died.matches(lf.ProcessDied)
    assert "died" in died.message and "try 1 of task 'flaky'" in died.message
    assert task.tries[0]["finished_at"] is not None
    assert task.attempts == len(task.tries) == 3


def _stored_task_from(backend: lf.Backend, flow_uuid: str) -> lf.TaskDetail:
    with backend.connect() as conn:
        task = conn.get_flow_details(flow_uuid).tasks[0]
    return task


def test_tries_round_trip_through_to_dict_as_json_safe_values() -> None:
    engine = lf.load(_flow(backoff=0.001))
    engine.run()
    task = engine.flow_detail.tasks[0]
    data = task.to_dict()
    assert isinstance(data["tries"][0]["started_at"], str)
    assert data["tries"][0]["failure"]["message"] == "gateway down (call 1)"
    assert lf.TaskDetail.from_dict(data).tries == task.tries
