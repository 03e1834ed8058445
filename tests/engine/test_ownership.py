"""One owner per running flow: take, FlowBusy, fencing, suspend/cancel requests, Interrupted."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import ledgerflow as lf
from ledgerflow import states
from ledgerflow.engine import identity
from ledgerflow.persistence.ownership import OwnChange
from tests.engine import flows_for_crash
from tests.engine.test_crash import CHAIN_TOTAL, ROOT, child, log_lines, stored

OTHER_HOST = "elsewhere/boot/ns:1:1"


def _flow(*tasks: lf.Task) -> lf.Flow:
    return lf.LinearFlow("owned", *tasks)


@lf.task(provides="x")
def make_x() -> int:
    return 1


def _suspended_flow(backend: lf.Backend) -> str:
    engine = lf.load("tests.engine.flows_for_crash:chain", backend=backend)
    engine.suspend()
    engine.run()
    return engine.flow_detail.uuid


def _hold(backend: lf.Backend, flow_uuid: str, owner: str, lease: float = 30.0) -> None:
    with backend.connect() as conn:
        fence = conn.get_ownership(flow_uuid).fence
        assert conn.change_ownership(flow_uuid, OwnChange("take", fence, owner, lease))


def test_run_takes_the_flow_and_lets_go(backend: lf.Backend) -> None:
    seen: list[tuple[str | None, int]] = []
    engine: lf.Engine

    @lf.task
    def look() -> None:
        with backend.connect() as conn:
            owned = conn.get_ownership(engine.flow_detail.uuid)
        seen.append((owned.owner, owned.fence))

    engine = lf.load(_flow(look), backend=backend)
    engine.run()
    assert seen == [(identity.this_process(), 1)]
    with backend.connect() as conn:
        after = conn.get_ownership(engine.flow_detail.uuid)
    assert (after.owner, after.fence, after.lease_expires_at) == (None, 1, None)
    assert engine.flow_detail.owner is None and engine.flow_detail.fence == 1


def test_a_live_owner_elsewhere_makes_resume_busy_and_nothing_is_written(
    backend: lf.Backend,
) -> None:
    flow_uuid = _suspended_flow(backend)
    _hold(backend, flow_uuid, OTHER_HOST)
    before = stored_detail(backend, flow_uuid)
    with pytest.raises(lf.FlowBusy) as busy:
        lf.resume(backend, flow_uuid, store={"extra": 1})
    assert busy.value.owner == OTHER_HOST and busy.value.lease_expires_at is not None
    assert OTHER_HOST in str(busy.value)
    with pytest.raises(lf.FlowBusy):
        lf.resume(backend, flow_uuid, wait=0.2)
    assert stored_detail(backend, flow_uuid).to_dict() == before.to_dict()


def test_an_expired_lease_elsewhere_is_taken_over(backend: lf.Backend) -> None:
    flow_uuid = _suspended_flow(backend)
    _hold(backend, flow_uuid, OTHER_HOST, lease=0.3)
    result = lf.resume(backend, flow_uuid, wait=30)
    assert result[f"total{flows_for_crash.CHAIN_LENGTH}"] == CHAIN_TOTAL
    with backend.connect() as conn:
        assert conn.get_ownership(flow_uuid).fence == 3  # first run, the other host, us


def test_a_dead_owner_on_this_host_is_taken_over_at_once(backend: lf.Backend) -> None:
    flow_uuid = _suspended_flow(backend)
    host = identity.this_process().rsplit(":", 2)[0]
    _hold(backend, flow_uuid, f"{host}:999999999:1", lease=3600)  # no such process
    assert lf.resume(backend, flow_uuid)[f"total{flows_for_crash.CHAIN_LENGTH}"] == CHAIN_TOTAL
    # This process, but no engine here holds it (one that could not let go): gone too.
    flow_uuid = _suspended_flow(backend)
    _hold(backend, flow_uuid, identity.this_process(), lease=3600)
    assert lf.resume(backend, flow_uuid)[f"total{flows_for_crash.CHAIN_LENGTH}"] == CHAIN_TOTAL


def stored_detail(backend: lf.Backend, flow_uuid: str) -> lf.FlowDetail:
    with backend.connect() as conn:
        return conn.get_flow_details(flow_uuid)


def test_a_taken_over_engine_is_fenced_out_and_reverts_nothing(backend: lf.Backend) -> None:
    reverted: list[str] = []
    engine: lf.Engine

    class Stalls(lf.Task):
        def execute(self) -> int:
            # Meanwhile another engine, elsewhere, decided this one was gone and took over.
            with backend.connect() as conn:
                fence = conn.get_ownership(engine.flow_detail.uuid).fence
                conn.change_ownership(
                    engine.flow_detail.uuid,
                    OwnChange("take", fence, OTHER_HOST, 30.0, force=True),
                )
            return 2

        def revert(self, **_: Any) -> None:
            reverted.append(self.name)

    class First(Stalls):
        def execute(self) -> int:
            return 1

    engine = lf.load(_flow(First(name="first"), Stalls(name="stalls")), backend=backend)
    with pytest.raises(lf.FencedOut):
        engine.run()
    assert isinstance(lf.FencedOut("x"), lf.ConflictError)
    after = stored_detail(backend, engine.flow_detail.uuid)
    assert reverted == []
    assert after.state == states.RUNNING
    assert {t.name: t.state for t in after} == {"first": "SUCCESS", "stalls": "RUNNING"}
    with backend.connect() as conn:
        assert conn.get_ownership(engine.flow_detail.uuid).owner == OTHER_HOST


def test_a_fenced_out_checkpoint_stops_the_run_without_failing_the_task(
    backend: lf.Backend,
) -> None:
    engine: lf.Engine

    @lf.task
    def checkpoints() -> None:
        with backend.connect() as conn:
            fence = conn.get_ownership(engine.flow_detail.uuid).fence
            conn.change_ownership(
                engine.flow_detail.uuid, OwnChange("take", fence, OTHER_HOST, 30.0, force=True)
            )
        lf.current_task().checkpoint("half")

    engine = lf.load(_flow(checkpoints), backend=backend)
    with pytest.raises(lf.FencedOut):
        engine.run()
    after = stored_detail(backend, engine.flow_detail.uuid)
    assert [(t.state, t.checkpoint, t.failure) for t in after] == [("RUNNING", None, None)]


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), True, "5"])
def test_bad_lease_and_wait_values_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="lease"):
        lf.load(_flow(make_x), lease=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lease"):
        lf.resume("memory://", "x", lease=bad)  # type: ignore[arg-type]
    if bad != 0:
        with pytest.raises(ValueError, match="wait"):
            lf.resume("memory://", "x", wait=bad)  # type: ignore[arg-type]


def _waits_for_stop(started: threading.Event) -> lf.Task:
    @lf.task(name="long")
    def long() -> None:
        ctx = lf.current_task()
        started.set()
        beats = 0
        while not ctx.stop_requested:
            beats += 1
            ctx.checkpoint(beats)
            threading.Event().wait(0.01)
        raise lf.Interrupted()

    return long


def test_remote_suspend_reaches_a_long_checkpointing_task(backend: lf.Backend) -> None:
    started = threading.Event()
    engine = lf.load(_flow(_waits_for_stop(started), make_x), backend=backend, lease=0.6)
    flow_uuid = engine.flow_detail.uuid

    def ask() -> None:
        started.wait(30)
        assert lf.suspend(backend, flow_uuid) == states.RUNNING

    thread = threading.Thread(target=ask)
    thread.start()
    assert engine.run() == {}
    thread.join()
    after = stored_detail(backend, flow_uuid)
    assert after.state == states.SUSPENDED
    long = after.find_by_name("long")
    assert long is not None and long.state == states.PENDING and long.checkpoint
    assert lf.suspend(backend, flow_uuid) == states.SUSPENDED  # unowned: nothing changes
    with backend.connect() as conn:
        assert conn.get_ownership(flow_uuid).request is None


def test_remote_cancel_reverts_and_ends_cancelled(backend: lf.Backend) -> None:
    started = threading.Event()
    undone: list[str] = []

    @lf.task(provides="y")
    def first() -> int:
        return 1

    @first.revert
    def undo_first(*, result: Any, flow_failures: Any) -> None:
        undone.append("first")

    long = _waits_for_stop(started)

    @long.revert
    def undo_long(*, result: Any, flow_failures: Any) -> None:
        undone.append("long")

    engine = lf.load(_flow(first, long, make_x), backend=backend, lease=0.6)
    flow_uuid = engine.flow_detail.uuid
    threading.Thread(target=lambda: started.wait(30) and lf.cancel(backend, flow_uuid)).start()
    with pytest.raises(lf.FlowCancelled):
        engine.run()
    assert undone == ["long", "first"]  # the interrupted task is reverted as one that ran
    after = stored_detail(backend, flow_uuid)
    assert after.state == states.CANCELLED
    assert [t.state for t in after] == [states.REVERTED, states.REVERTED, states.PENDING]
    assert lf.cancel(backend, flow_uuid) == states.CANCELLED
    with pytest.raises(lf.FlowCancelled):
        lf.resume(backend, flow_uuid, flow=_flow(first, long, make_x))


def test_cancel_of_an_unowned_flow_reverts_it_here(backend: lf.Backend) -> None:
    flow_uuid = _suspended_flow(backend)
    assert lf.cancel(backend, flow_uuid) == states.CANCELLED
    assert stored_detail(backend, flow_uuid).state == states.CANCELLED


def test_cancel_refuses_finished_flows_and_unimportable_factories(backend: lf.Backend) -> None:
    engine = lf.load(_flow(make_x), backend=backend)
    engine.run()
    with pytest.raises(ValueError, match="already ended SUCCESS"):
        lf.cancel(backend, engine.flow_detail.uuid)
    assert lf.suspend(backend, engine.flow_detail.uuid) == states.SUCCESS
    with pytest.raises(lf.NotFound):
        lf.cancel(backend, "no-such-flow")
    with pytest.raises(lf.NotFound):
        lf.suspend(backend, "no-such-flow")
    broken = lf.load(_flow(make_x), backend=backend)
    broken.suspend()
    broken.run()
    flow_uuid = broken.flow_detail.uuid
    with backend.connect() as conn:
        detail = conn.get_flow_details(flow_uuid)
        detail.meta = {**detail.meta, "factory": "no_such_module_here:build"}
        conn.update_flow_details(detail)
    before = stored_detail(backend, flow_uuid).to_dict()
    with pytest.raises(ValueError, match="cannot be imported"):
        lf.cancel(backend, flow_uuid)
    assert stored_detail(backend, flow_uuid).to_dict() == before


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "file", "postgresql", "mysql"])
def test_two_processes_resuming_at_once_execute_each_task_once(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    uri = {
        "sqlite": lambda: f"sqlite:///{tmp_path / 'race.db'}",
        "file": lambda: f"file://{tmp_path / 'race'}",
        "postgresql": lambda: request.getfixturevalue("postgres_uri"),
        "mysql": lambda: request.getfixturevalue("mysql_uri"),
    }[kind]()
    for round_ in range(20):
        log, uuid_file = tmp_path / f"exec{round_}.log", tmp_path / f"uuid{round_}"
        proc = child(["run", uri, "chain", str(uuid_file)], log, LEDGERFLOW_TEST_KILL_AT="step3")
        proc.communicate(timeout=120)
        assert proc.returncode == -signal.SIGKILL
        flow_uuid = uuid_file.read_text()
        offset = len(log_lines(log))
        racers = [child(["resume", uri, flow_uuid], log) for _ in range(2)]
        outcomes = [racer.communicate(timeout=120) for racer in racers]
        codes = [racer.returncode for racer in racers]
        assert 0 in codes, outcomes
        for code, (_, err) in zip(codes, outcomes, strict=True):
            assert code == 0 or "FlowBusy" in err, err
        starts = [line for line in log_lines(log)[offset:] if line.startswith("start")]
        assert len(starts) == len(set(starts)), starts  # every task executed once
        assert stored(uri, flow_uuid).state == states.SUCCESS


def test_a_try_past_its_timeout_fails_with_task_timeout_and_is_retried(
    backend: lf.Backend,
) -> None:
    release = threading.Event()
    tries: list[int] = []
    late: list[bool] = []
    late_done = threading.Event()

    @lf.task(provides="x", timeout=0.2, retry=lf.Retry(attempts=2, backoff=0.0))
    def stuck_once() -> int:
        tries.append(len(tries) + 1)
        if len(tries) == 1:
            ctx = lf.current_task()
            release.wait(30)  # stuck until the engine gave up on this try
            ctx.checkpoint("late")  # dropped
            late.append(ctx.stop_requested)
            late_done.set()
            return 99  # discarded
        return 1

    engine = lf.load(_flow(stuck_once), backend=backend)
    engine.on_change(lambda e: release.set() if e.state == states.RETRYING else None)
    assert engine.run() == {"x": 1}
    assert late_done.wait(30) and late == [True]
    detail = stored_detail(backend, engine.flow_detail.uuid).find_by_name("stuck_once")
    assert detail is not None and detail.result == 1 and detail.checkpoint is None
    assert tries == [1, 2]


def test_a_timeout_without_retry_fails_the_flow(backend: lf.Backend) -> None:
    never = threading.Event()

    @lf.task(timeout=0.1)
    def hangs() -> None:
        never.wait(5)

    with pytest.raises(lf.FlowFailed) as failed:
        lf.run(_flow(hangs), backend=backend)
    never.set()
    assert failed.value.failures["hangs"].matches(lf.TaskTimeout)


@pytest.mark.parametrize("bad", [0, -1.0, True, "3", float("inf")])
def test_bad_timeouts_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="timeout"):
        lf.task(timeout=bad)(lambda: None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        lf.Task(name="t", timeout=bad)  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_ctrl_c_suspend_the_flow(signum: int, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'signals.db'}"
    started, uuid_file = tmp_path / "started", tmp_path / "uuid"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.engine.flows_for_signals", uri, str(started), str(uuid_file)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not started.exists():  # the file is the event: the task is running
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.strip() == states.SUSPENDED
    flow = stored(uri, uuid_file.read_text())
    assert flow.state == states.SUSPENDED and flow.owner is None
    assert [t.state for t in flow] == [states.PENDING, states.PENDING]


def _signals_child(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.engine.flows_for_signals", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_an_engine_stopped_past_its_lease_is_fenced_out_when_it_continues(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    uri = (
        f"sqlite:///{tmp_path / 'stall.db'}"
        if kind == "sqlite"
        else str(request.getfixturevalue("postgres_uri"))
    )
    started, go, uuid_file = tmp_path / "started", tmp_path / "go", tmp_path / "uuid"
    stale = _signals_child("stall", uri, str(started), str(go), str(uuid_file))
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert stale.poll() is None and time.monotonic() < deadline, stale.communicate()
            time.sleep(0.01)
        stale.send_signal(signal.SIGSTOP)  # stalls inside `slow`, past its 1 s lease
        go.touch()
        flow_uuid = uuid_file.read_text()
        taker = _signals_child("resume", uri, flow_uuid)
        out, err = taker.communicate(timeout=120)
        assert taker.returncode == 0, err
        results = json.loads(out.strip().splitlines()[-1])
        assert results == {"slow_pid": taker.pid, "last_pid": taker.pid}
    finally:
        stale.send_signal(signal.SIGCONT)
    _, err = stale.communicate(timeout=120)
    assert stale.returncode != 0 and "FencedOut" in err, err
    flow = stored(uri, flow_uuid)
    assert flow.state == states.SUCCESS and flow.owner is None
    assert [(t.name, t.state, t.result) for t in flow] == [
        ("slow", "SUCCESS", taker.pid),
        ("last", "SUCCESS", taker.pid),
    ]


def test_the_heartbeat_keeps_a_long_task_owned_past_its_lease(backend: lf.Backend) -> None:
    refused: list[bool] = []
    engine: lf.Engine

    @lf.task
    def outlives_the_lease() -> None:
        # Three leases long: without the heartbeat another taker would get in.
        for _ in range(3):
            threading.Event().wait(0.5)
            with backend.connect() as conn:  # a taker elsewhere: only an expired lease is free
                seen = conn.get_ownership(engine.flow_detail.uuid)
                take = OwnChange("take", seen.fence, OTHER_HOST, 30.0)
                refused.append(not conn.change_ownership(engine.flow_detail.uuid, take))

    engine = lf.load(_flow(outlives_the_lease), backend=backend, lease=0.5)
    engine.run()
    assert refused == [True, True, True]


def test_a_run_shorter_than_a_third_of_its_lease_starts_no_heartbeat_thread(
    backend: lf.Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[str] = []
    start = threading.Thread.start

    def noted(thread: threading.Thread) -> None:
        started.append(thread.name)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", noted)
    engine = lf.load(_flow(make_x), backend=backend, lease=600.0)
    assert engine.run() == {"x": 1}
    assert not [name for name in started if name.startswith("ledgerflow-lease-")], started
    with backend.connect() as conn:
        assert conn.get_ownership(engine.flow_detail.uuid).owner is None  # let go all the same


def test_a_store_down_past_the_window_stops_with_storage_error_and_stays_resumable(
    tmp_path: Path,
) -> None:
    path = tmp_path / "down.db"
    uri = f"sqlite:///{path}?busy_timeout=20"
    lock = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    reverted: list[str] = []
    lock_taken: list[bool] = []

    @lf.task(provides="a")
    def takes_the_store_away() -> int:
        if not reverted and not lock_taken:
            lock.execute("BEGIN IMMEDIATE")  # nobody else can write from now on
            lock_taken.append(True)
        return 1

    @takes_the_store_away.revert
    def undo(*, result: Any, flow_failures: Any) -> None:
        reverted.append("undo")

    @lf.task(provides="b")
    def later(a: int) -> int:
        return a + 1

    flow = lf.LinearFlow("down", takes_the_store_away, later)
    engine = lf.load(flow, backend=uri)
    engine.storage.outage_window = 0.3
    with pytest.raises(lf.StorageError, match="locked"):
        engine.run()
    lock.execute("ROLLBACK")
    lock.close()
    assert reverted == []
    assert lf.resume(uri, engine.flow_detail.uuid, flow=flow) == {"a": 1, "b": 2}


@pytest.mark.slow
@pytest.mark.parametrize("request_", ["suspend", "cancel"])
def test_suspend_and_cancel_reach_an_owner_in_another_process(
    request_: str, tmp_path: Path
) -> None:
    uri = f"sqlite:///{tmp_path / 'remote.db'}"
    started, uuid_file = tmp_path / "started", tmp_path / "uuid"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.engine.flows_for_signals", uri, str(started), str(uuid_file)],
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}",
            "LEDGERFLOW_TEST_LEASE": "0.6",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not started.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    flow_uuid = uuid_file.read_text()
    assert getattr(lf, request_)(uri, flow_uuid) == states.RUNNING  # returns at once
    _, err = proc.communicate(timeout=60)
    flow = stored(uri, flow_uuid)
    if request_ == "suspend":
        assert proc.returncode == 0, err
        assert flow.state == states.SUSPENDED
    else:
        assert proc.returncode != 0 and "FlowCancelled" in err, err
        assert flow.state == states.CANCELLED
    assert flow.owner is None
