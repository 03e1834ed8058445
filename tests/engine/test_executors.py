"""Executors that behave: capacity caps tasks in flight, the task context works in worker
processes, a worker's death fails only its own task and a broken pool is replaced."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Iterator
from concurrent import futures
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pytest

import ledgerflow as lf
from ledgerflow.engine.executors import Pool
from tests.engine import flows_for_executors as flows

FLOWS = "tests.engine.flows_for_executors"


@pytest.fixture(scope="module")
def processes() -> Iterator[futures.ProcessPoolExecutor]:
    """Two worker processes, started fresh (spawn: no locks inherited from test threads)."""
    with futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


@pytest.fixture
def store(tmp_path: Path) -> str:
    """A SQLite store another process could resume from."""
    return f"sqlite:///{tmp_path / 'runs.db'}"


def _detail(store: str, flow_uuid: str, name: str) -> lf.TaskDetail:
    backend = lf.open_backend(store)
    try:
        conn = backend.connect()
        try:
            detail = conn.get_flow_details(flow_uuid).find_by_name(name)
        finally:
            conn.close()
    finally:
        backend.close()
    assert detail is not None
    return detail


def _most_running(engine: lf.Engine) -> list[int]:
    """Watch ``engine``: [tasks RUNNING now, most RUNNING at once]."""
    seen = [0, 0]
    lock = threading.Lock()

    def on_change(event: Any) -> None:
        if event.kind != "task":
            return
        with lock:
            seen[0] += 1 if event.state == "RUNNING" else -1 if event.state == "SUCCESS" else 0
            seen[1] = max(seen)

    engine.on_change(on_change)
    return seen


@pytest.mark.parametrize("kind", ["threads", "processes"])
def test_capacity_caps_tasks_marked_running(
    kind: str, processes: futures.ProcessPoolExecutor
) -> None:
    executor: futures.Executor = processes
    if kind == "threads":
        executor = futures.ThreadPoolExecutor(2)
    engine = lf.load(f"{FLOWS}:wide_default", engine="parallel", executor=executor)
    seen = _most_running(engine)
    assert len(engine.run()) == 6
    assert seen == [0, 2]  # two at a time, never all six RUNNING at once
    if kind == "threads":
        executor.shutdown()


def test_max_workers_below_capacity_wins(processes: futures.ProcessPoolExecutor) -> None:
    engine = lf.load(f"{FLOWS}:wide_default", engine="parallel", executor=processes, max_workers=1)
    seen = _most_running(engine)
    engine.run()
    assert seen == [0, 1]


def test_an_executor_of_unknown_capacity_gets_max_workers() -> None:
    class Inline(futures.Executor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> futures.Future[Any]:
            future: futures.Future[Any] = futures.Future()
            future.set_result(fn(*args, **kwargs))
            return future

    assert Pool(Inline(), 3).limit == 3
    assert Pool(Inline(), None).limit == (os.cpu_count() or 1)
    # Tasks on it get the context that asks the engine (it may be in another process).
    engine = lf.load(f"{FLOWS}:introspecting", engine="parallel", executor=Inline())
    assert engine.run()["seen"]["after"] == ["saved", os.getpid()]


def test_current_task_and_durable_checkpoints_in_process_workers(
    processes: futures.ProcessPoolExecutor, store: str
) -> None:
    engine = lf.load(f"{FLOWS}:introspecting", engine="parallel", executor=processes, backend=store)
    seen = engine.run()["seen"]
    assert seen["pid"] != os.getpid()
    assert seen["name"] == "introspect" and seen["attempt"] == 1
    assert seen["before"] is None and seen["stop"] is False
    assert seen["after"] == ["saved", seen["pid"]]
    stored = _detail(store, engine.flow_detail.uuid, "introspect")
    assert stored.checkpoint == ["saved", seen["pid"]]


def test_retries_in_process_workers_really_execute_again(
    processes: futures.ProcessPoolExecutor, tmp_path: Path
) -> None:
    out = lf.run(
        f"{FLOWS}:retried", store={"workdir": str(tmp_path)}, engine="parallel", executor=processes
    )
    assert out == {"flaky": 3}
    assert flows.executions(str(tmp_path), "flaky") == 3


def test_unpicklable_tasks_are_refused_before_any_runs(
    processes: futures.ProcessPoolExecutor, tmp_path: Path, store: str
) -> None:
    engine = lf.load(
        f"{FLOWS}:unpicklable",
        store={"workdir": str(tmp_path)},
        engine="parallel",
        executor=processes,
        backend=store,
    )
    with pytest.raises(TypeError, match=r"'locked'.*pickle"):
        engine.run()
    assert flows.executions(str(tmp_path), "fine") == 0
    assert _detail(store, engine.flow_detail.uuid, "fine").state == "PENDING"
    # A thread pool shares memory: the same flow runs there.
    assert lf.run(f"{FLOWS}:unpicklable", store={"workdir": str(tmp_path)}, engine="parallel") == {
        "fine": 2,
        "locked": 1,
    }


def test_resume_takes_an_executor_and_max_workers(
    processes: futures.ProcessPoolExecutor, store: str
) -> None:
    engine = lf.load(f"{FLOWS}:located", engine="parallel", backend=store)  # recorded only
    out = lf.resume(store, engine.flow_detail.uuid, executor=processes, max_workers=1)
    assert out["where"] != os.getpid()


def _run_in_thread(engine: lf.Engine) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = engine.run()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    return thread, outcome


def test_a_killed_worker_fails_only_its_task_and_the_pool_is_replaced(
    tmp_path: Path, store: str
) -> None:
    workdir = str(tmp_path)
    pool = futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
    engine = lf.load(
        f"{FLOWS}:killed_worker",
        store={"workdir": workdir},
        engine="parallel",
        executor=pool,
        backend=store,
    )
    thread, outcome = _run_in_thread(engine)
    try:
        flows.wait_for(tmp_path / "checkpointed", running=thread.is_alive)  # checkpointed
        flows.wait_for(tmp_path / "bystander-1", running=thread.is_alive)
        pid = int((tmp_path / "checkpointed").read_text())
        os.kill(pid, signal.SIGKILL)
        # The bystander runs again, on the new pool.
        flows.wait_for(tmp_path / "bystander-2", running=thread.is_alive)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {outcome}") from None
    flows.touch(tmp_path / "go")
    thread.join(120)
    pool.shutdown()
    assert "error" not in outcome, outcome
    assert outcome["result"]["outcome"]["found"] == {"pid": pid, "attempt": 1}
    victim = _detail(store, engine.flow_detail.uuid, "victim")
    assert victim.attempts == 2
    first = victim.tries[0]["failure"]
    assert first is not None and first.matches(lf.ProcessDied)
    assert "victim" in first.message
    bystander = _detail(store, engine.flow_detail.uuid, "bystander")
    assert [t["state"] for t in bystander.tries] == ["INTERRUPTED", "SUCCESS"]
    assert engine.flow_detail.state == "SUCCESS"


def test_a_worker_that_dies_without_retry_fails_the_flow_not_leaves_it_running(
    tmp_path: Path, store: str
) -> None:
    processes = futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
    engine = lf.load(
        f"{FLOWS}:dying",
        store={"workdir": str(tmp_path)},
        engine="parallel",
        executor=processes,
        backend=store,
    )
    with pytest.raises(lf.FlowFailed) as info:
        engine.run()
    failure = info.value.failures["suicide"]
    assert failure.matches(lf.ProcessDied) and "suicide" in failure.message
    assert engine.flow_detail.state == "REVERTED"
    assert _detail(store, engine.flow_detail.uuid, "fine").state == "REVERTED"
    # The caller's pool is broken; the run used a new one and the next run does too.
    assert lf.run(f"{FLOWS}:located", engine="parallel", executor=processes)["where"] > 0
    processes.shutdown()


def test_suspend_with_tries_sent_ahead_leaves_them_pending(
    processes: futures.ProcessPoolExecutor, store: str
) -> None:
    engine = lf.load(f"{FLOWS}:wide_default", engine="parallel", executor=processes, backend=store)
    engine.on_change(
        lambda event: (
            engine.suspend() if event.kind == "task" and event.state == "SUCCESS" else None
        )
    )
    engine.run()
    assert engine.flow_detail.state == "SUSPENDED"
    states = [detail.state for detail in engine.flow_detail]
    assert "RUNNING" not in states and "PENDING" in states
    assert len(lf.resume(store, engine.flow_detail.uuid, executor=processes)) == 6


def test_a_worker_the_pool_manager_missed_is_noticed_when_nudged(tmp_path: Path) -> None:
    # CPython's pool wakes its manager thread before starting the worker a submit adds,
    # so the manager may wait without watching that worker: its death then goes unseen.
    # The private _adjust_process_count starts a worker with no wake-up, as that race does.
    pool = futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
    try:
        waiting = pool.submit(flows.started_then_wait, tmp_path / "started", tmp_path / "go")
        flows.wait_for(tmp_path / "started")  # the manager handed it out and now waits
        pool._adjust_process_count()  # type: ignore[attr-defined]
        processes = list(pool._processes.values())  # type: ignore[attr-defined]
        assert len(processes) == 2
        missed = processes[-1]
        os.kill(missed.pid, signal.SIGKILL)
        missed.join()
        Pool(pool, 2).nudge()
        assert isinstance(waiting.exception(timeout=120), BrokenProcessPool)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def test_a_nudge_starts_no_worker(tmp_path: Path) -> None:
    # A worker started by a nudge, as the manager ends the pool's workers after a death,
    # is one it never ends: the pool's shutdown (the run replacing it) would hang.
    pool = futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
    try:
        busy = pool.submit(flows.started_then_wait, tmp_path / "started", tmp_path / "go")
        flows.wait_for(tmp_path / "started")  # its one worker is busy: a submit would add one
        before = set(pool._processes)  # type: ignore[attr-defined]
        Pool(pool, 2).nudge()
        assert set(pool._processes) == before  # type: ignore[attr-defined]
    finally:
        flows.touch(tmp_path / "go")
        pool.shutdown(wait=True)
    assert busy.result(timeout=120) is None


def test_a_task_that_kills_its_worker_before_starting_fails_instead_of_looping(
    tmp_path: Path, store: str
) -> None:
    pool = futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
    engine = lf.load(f"{FLOWS}:unstartable", engine="parallel", executor=pool, backend=store)
    thread, outcome = _run_in_thread(engine)
    thread.join(300)  # without a bound the run replaced its pool for ever
    pool.shutdown()
    assert not thread.is_alive(), "the run kept resending a try no worker could start"
    error = outcome.get("error")
    assert isinstance(error, lf.FlowFailed), outcome
    failure = error.failures["killer"]
    assert failure.matches(lf.ProcessDied) and "'killer'" in failure.message
    assert "3 times in a row" in failure.message
    killer = _detail(store, engine.flow_detail.uuid, "killer")
    assert [t["state"] for t in killer.tries] == ["FAILURE"]
