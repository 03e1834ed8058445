"""Tasks on a real Dask LocalCluster of two worker processes: retries re-execute, a killed
worker's task is retried, checkpoints from workers survive an engine crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
import pytest
from distributed import Client, LocalCluster

import ledgerflow as lf
from ledgerflow.engine import remote_tries
from ledgerflow.engine.executors import Pool
from ledgerflow.persistence.ownership import OwnChange
from ledgerflow.storage import Storage
from tests.engine import flows_for_executors as flows
from tests.engine.test_executors import _detail, _most_running, _run_in_thread

FLOWS = "tests.engine.flows_for_executors"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    """One cluster for the module (starting one takes seconds): 2 processes x 1 thread.

    ``allowed-failures: 0``: the scheduler does not re-run by itself a task whose worker
    died, so the task's own Retry is what runs it again (and the try is recorded).
    """
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as dask_client,
    ):
        yield dask_client


@pytest.fixture
def store(tmp_path: Path) -> str:
    """A SQLite store another process could resume from."""
    return f"sqlite:///{tmp_path / 'runs.db'}"


def test_capacity_is_the_clusters_threads(client: Client) -> None:
    assert Pool(client.get_executor(), None).limit == 2
    assert Pool(client, None).limit == 2  # a Client itself is accepted
    assert Pool(client.get_executor(), 1).limit == 1
    engine = lf.load(f"{FLOWS}:wide_default", engine="parallel", executor=client.get_executor())
    seen = _most_running(engine)
    assert len(engine.run()) == 6
    assert seen == [0, 2]


def test_retries_really_execute_again(client: Client, tmp_path: Path) -> None:
    # get_executor() defaults to pure=True: the retry would get the first failure back.
    out = lf.run(
        f"{FLOWS}:retried",
        store={"workdir": str(tmp_path)},
        engine="parallel",
        executor=client.get_executor(),
    )
    assert out == {"flaky": 3}
    assert flows.executions(str(tmp_path), "flaky") == 3


def test_current_task_and_checkpoints_in_dask_workers(client: Client, store: str) -> None:
    engine = lf.load(f"{FLOWS}:introspecting", engine="parallel", executor=client, backend=store)
    seen = engine.run()["seen"]
    assert seen["pid"] in client.run(os.getpid).values()
    assert seen["name"] == "introspect" and seen["before"] is None
    assert seen["after"] == ["saved", seen["pid"]] and seen["stop"] is False
    assert _detail(store, engine.flow_detail.uuid, "introspect").checkpoint == seen["after"]


def test_unpicklable_tasks_are_refused_naming_the_task(client: Client, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="'locked'"):
        lf.run(
            f"{FLOWS}:unpicklable",
            store={"workdir": str(tmp_path)},
            engine="parallel",
            executor=client.get_executor(),
        )
    assert flows.executions(str(tmp_path), "fine") == 0


def test_a_killed_workers_task_is_retried(client: Client, tmp_path: Path, store: str) -> None:
    engine = lf.load(
        f"{FLOWS}:checkpointer",
        store={"workdir": str(tmp_path)},
        engine="parallel",
        executor=client.get_executor(),
        backend=store,
    )
    thread, outcome = _run_in_thread(engine)
    flows.wait_for(tmp_path / "checkpointed")
    pid = int((tmp_path / "checkpointed").read_text())
    assert pid in client.run(os.getpid).values()  # a worker process, not this one
    os.kill(pid, signal.SIGKILL)
    thread.join(120)
    assert "error" not in outcome, outcome
    result = outcome["result"]["outcome"]
    assert result["found"] == {"pid": pid, "attempt": 1} and result["pid"] != pid
    victim = _detail(store, engine.flow_detail.uuid, "victim")
    assert victim.attempts == 2
    failure = victim.tries[0]["failure"]
    assert failure is not None and failure.matches(lf.ProcessDied)
    assert "victim" in failure.message
    client.wait_for_workers(2, timeout=60)  # the nanny restarts the killed one


ENGINE_SCRIPT = """
import sys
from distributed import Client
import ledgerflow as lf
client = Client(sys.argv[1])
engine = lf.load(
    "tests.engine.flows_for_executors:checkpointer",
    store={"workdir": sys.argv[2]},
    engine="parallel",
    executor=client.get_executor(),
    backend=sys.argv[3],
    lease=1.0,
)
print(engine.flow_detail.uuid, flush=True)
engine.run()
"""


def test_checkpoints_from_workers_survive_an_engine_crash(
    client: Client, tmp_path: Path, store: str
) -> None:
    address: Any = client.scheduler.address
    engine = subprocess.Popen(
        [sys.executable, "-c", ENGINE_SCRIPT, address, str(tmp_path), store],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert engine.stdout is not None
        flow_uuid = engine.stdout.readline().strip()
        flows.wait_for(tmp_path / "checkpointed")  # checkpoint() returned in the worker
        pid = int((tmp_path / "checkpointed").read_text())
        engine.send_signal(signal.SIGKILL)
        engine.wait()
    finally:
        if engine.poll() is None:
            engine.kill()
    try:
        out = lf.resume(store, flow_uuid, wait=30.0, executor=client.get_executor())
    finally:
        flows.touch(tmp_path / "release")  # the first try, still waiting on its worker
    assert out["outcome"]["found"] == {"pid": pid, "attempt": 1}
    victim = _detail(store, flow_uuid, "victim")
    assert victim.attempts == 2 and victim.tries[0]["failure"].matches(lf.ProcessDied)


def test_many_flows_share_the_cluster(client: Client) -> None:
    executor = client.get_executor()
    results: list[dict[str, Any]] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(
                lf.run(f"{FLOWS}:wide_default", engine="parallel", executor=executor)
            )
        )
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert [len(r) for r in results] == [6, 6, 6]


def test_a_result_and_the_next_tries_start_commit_together(
    client: Client, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The wait ends as soon as the next try starts; a long bound keeps this test from
    # depending on how fast this machine is (it asserts a count, never a time).
    monkeypatch.setattr(remote_tries, "BEGIN_LINGER", 120.0)
    commits: list[int] = []
    write = Storage._write

    def counted(self: Storage, *args: Any) -> None:
        commits.append(len(args) - 1)  # the details written in this one commit
        write(self, *args)

    monkeypatch.setattr(Storage, "_write", counted)
    engine = lf.load(
        flows.wide(20, 0.01), engine="parallel", executor=client.get_executor(), backend=store
    )
    commits.clear()
    assert len(engine.run()) == 20
    # The flow's start, the first two tries' starts, then one commit for each result
    # and the next try's start, the last two results alone and the flow's end.
    assert len(commits) <= 1 + 2 + 18 + 2 + 1, commits


def test_tries_sent_ahead_of_a_taken_over_run_never_start(
    client: Client, store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The run waits for the next try's start before committing (a long bound: it asserts
    # what starts, never a time), so that the commit refused is the one that starts it.
    monkeypatch.setattr(remote_tries, "BEGIN_LINGER", 120.0)
    workdir = tmp_path / "work"
    workdir.mkdir()
    engine = lf.load(
        f"{FLOWS}:sent_ahead",
        engine="parallel",
        executor=client.get_executor(),
        backend=store,
        store={"workdir": str(workdir)},
    )
    thread, outcome = _run_in_thread(engine)
    for name in ("logged0", "logged1"):
        flows.wait_for(workdir / f"{name}-started", running=thread.is_alive)
    backend = lf.open_backend(store)
    with backend.connect() as conn:  # another engine took the flow over
        flow_uuid = engine.flow_detail.uuid
        fence = conn.get_ownership(flow_uuid).fence
        assert conn.change_ownership(
            flow_uuid, OwnChange("take", fence, "elsewhere/boot/ns:1:1", 30.0, force=True)
        )
    backend.close()
    flows.touch(workdir / "go")
    thread.join(120)
    assert "result" not in outcome and isinstance(outcome.get("error"), lf.FencedOut), outcome
    # The refused commit would have started them: told not to start, they never ran.
    assert [flows.executions(str(workdir), f"logged{i}") for i in range(4)] == [1, 1, 0, 0]
