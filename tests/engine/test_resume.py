"""Suspend and resume, version checks, resume of every flow state, save policies."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import ledgerflow as lf
from ledgerflow import states
from tests.engine import flows_for_crash

COUNTS: dict[str, int] = {}


class Counted(lf.Task):
    """Counts its executions in COUNTS and provides its name."""

    def __init__(self, name: str, needs: str | None = None, **kw: Any) -> None:
        super().__init__(name=name, provides=name, rebind={"prev": needs} if needs else None, **kw)

    def execute(self, prev: Any = None) -> str:
        COUNTS[self.name] = COUNTS.get(self.name, 0) + 1
        return f"{prev}>{self.name}" if prev else self.name


def linear(version: str = "1.0") -> lf.Flow:
    """a -> b -> c where each appends its name."""
    return lf.LinearFlow(
        "abc",
        Counted("a", version=version),
        Counted("b", "a", version=version),
        Counted("c", "b", version=version),
    )


@pytest.fixture(autouse=True)
def _reset_counts() -> None:
    COUNTS.clear()


def test_suspend_from_a_listener_then_resume() -> None:
    backend = lf.open_backend("memory://")
    engine = lf.load(linear(), backend=backend)

    def stop_after_a(event: lf.StateChange) -> None:
        if event.name == "a" and event.state == states.SUCCESS:
            engine.suspend()

    engine.on_change(stop_after_a)
    assert engine.run() == {"a": "a"}
    assert engine.flow_detail.state == states.SUSPENDED
    with backend.connect() as conn:
        stored = conn.get_flow_details(engine.flow_detail.uuid)
    assert stored.state == states.SUSPENDED
    assert [t.state for t in stored] == ["SUCCESS", "PENDING", "PENDING"]
    out = lf.resume(backend, engine.flow_detail.uuid, flow=linear())
    assert out == {"a": "a", "b": "a>b", "c": "a>b>c"}
    assert COUNTS == {"a": 1, "b": 1, "c": 1}


def test_suspend_from_another_thread_stops_after_in_flight_tasks() -> None:
    started, release = threading.Event(), threading.Event()

    @lf.task(provides="slow")
    def slow() -> int:
        started.set()
        release.wait(5)
        return 1

    @lf.task(provides="after")
    def after(slow: int) -> int:
        return slow + 1

    backend = lf.open_backend("memory://")
    flow = lf.LinearFlow("f", slow, after)
    engine = lf.load(flow, backend=backend, engine="parallel")
    result: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: result.update(engine.run()))
    runner.start()
    assert started.wait(5)
    engine.suspend()
    release.set()
    runner.join(10)
    assert result == {"slow": 1}
    assert engine.flow_detail.state == states.SUSPENDED
    assert lf.resume(backend, engine.flow_detail.uuid, flow=flow) == {"slow": 1, "after": 2}


def test_resume_rebuilds_flow_from_factory_path() -> None:
    backend = lf.open_backend("memory://")
    engine = lf.load("tests.engine.flows_for_crash:small_graph", backend=backend)
    assert engine.flow_detail.meta["factory"] == "tests.engine.flows_for_crash:small_graph"
    engine.suspend()
    assert engine.run() == {}
    assert lf.resume(backend, engine.flow_detail.uuid) == {"a": 1, "b": 2, "c": 3}


def test_factory_callable_path_is_recorded() -> None:
    engine = lf.load(flows_for_crash.small_graph, store={"k": 1}, save="batched")
    meta = engine.flow_detail.meta
    assert meta == {
        "factory": "tests.engine.flows_for_crash:small_graph",
        "store": {"k": 1},
        "engine": "serial",
        "save": "batched",
        "max_workers": None,
        "lease": 15.0,
    }


def test_resume_of_success_runs_nothing() -> None:
    backend = lf.open_backend("memory://")
    engine = lf.load(linear(), backend=backend)
    engine.run()
    assert lf.resume(backend, engine.flow_detail.uuid, flow=linear())["c"] == "a>b>c"
    assert COUNTS == {"a": 1, "b": 1, "c": 1}


def test_resume_of_reverted_flow_runs_again_and_attempts_keep_counting() -> None:
    backend = lf.open_backend("memory://")
    broken = {"on": True}

    @lf.task(provides="d")
    def maybe(c: str) -> str:
        if broken["on"]:
            raise RuntimeError("not yet")
        return c + ">d"

    def flow() -> lf.Flow:
        return linear().add(maybe)

    engine = lf.load(flow(), backend=backend)
    with pytest.raises(lf.FlowFailed):
        engine.run()
    broken["on"] = False
    out = lf.resume(backend, engine.flow_detail.uuid, flow=flow())
    assert out["d"] == "a>b>c>d"
    with backend.connect() as conn:
        stored = conn.get_flow_details(engine.flow_detail.uuid)
    assert stored.state == states.SUCCESS
    assert [t.attempts for t in stored] == [2, 2, 2, 2]


def test_resume_of_reverting_flow_continues_revert_only() -> None:
    backend = lf.open_backend("memory://")
    engine = lf.load(linear(), backend=backend)
    engine.run()
    with backend.connect() as conn:
        stored = conn.get_flow_details(engine.flow_detail.uuid)
        stored.state = states.REVERTING
        for td in stored:
            if td.name == "c":
                td.state = states.REVERTED
        conn.update_details(stored, *stored)
    reverted: list[str] = []

    class Undo(Counted):
        def revert(self, *, result: Any, flow_failures: Any, **inputs: Any) -> None:
            reverted.append(self.name)

    flow = lf.LinearFlow("abc", Undo("a"), Undo("b", "a"), Undo("c", "b"))
    with pytest.raises(lf.FlowFailed):
        lf.resume(backend, engine.flow_detail.uuid, flow=flow)
    assert reverted == ["b", "a"]
    assert COUNTS == {"a": 1, "b": 1, "c": 1}
    with backend.connect() as conn:
        assert conn.get_flow_details(engine.flow_detail.uuid).state == states.REVERTED


def test_resume_reruns_a_task_left_running() -> None:
    backend = lf.open_backend("memory://")
    engine = lf.load(linear(), backend=backend)
    engine.run()
    with backend.connect() as conn:
        stored = conn.get_flow_details(engine.flow_detail.uuid)
        stored.state = states.RUNNING
        c = stored.find_by_name("c")
        assert c is not None
        c.state, c.result = states.RUNNING, None
        conn.update_details(stored, c)
    assert lf.resume(backend, engine.flow_detail.uuid, flow=linear())["c"] == "a>b>c"
    assert COUNTS == {"a": 1, "b": 1, "c": 2}


def test_version_major_mismatch_refused_before_anything_runs() -> None:
    backend = lf.open_backend("memory://")
    engine = lf.load(linear("1.0"), backend=backend)
    engine.suspend()
    engine.run()
    with pytest.raises(lf.VersionMismatchError, match="'a'"):
        lf.resume(backend, engine.flow_detail.uuid, flow=linear("2.0"))
    assert COUNTS == {}
    assert lf.resume(backend, engine.flow_detail.uuid, flow=linear("1.4"))["c"] == "a>b>c"


class CountingBackend(lf.Backend):
    """Wraps the memory backend and counts update_details transactions."""

    def __init__(self) -> None:
        super().__init__("memory://")
        self.inner = lf.open_backend("memory://")
        self.commits = 0

    def connect(self) -> lf.Connection:
        conn = self.inner.connect()
        original = conn.update_details

        def counted(*details: Any, **options: Any) -> None:
            self.commits += 1
            original(*details, **options)

        conn.update_details = counted  # type: ignore[method-assign]
        return conn


def many(n: int) -> lf.Flow:
    """A linear flow of n no-op tasks."""
    flow = lf.LinearFlow("many")
    for i in range(n):
        flow.add(Counted(f"t{i}"))
    return flow


@pytest.mark.parametrize(("save", "most"), [("always", 51), ("batched", 3), ("final", 1)])
def test_save_policies_commit_counts(save: str, most: int) -> None:
    backend = CountingBackend()
    lf.run(many(50), backend=backend, save=save)
    assert backend.commits <= most
    with backend.connect() as conn:
        flows = conn.get_logbooks()[0].flows
    assert flows[0].state == states.SUCCESS
    assert {t.state for t in flows[0]} == {states.SUCCESS}


def test_always_commits_success_before_next_task_runs() -> None:
    backend = lf.open_backend("memory://")
    seen: list[str] = []

    @lf.task
    def check() -> None:
        with backend.connect() as conn:
            uuid = engine.flow_detail.find_by_name("first")
            assert uuid is not None
            seen.append(conn.get_task_details(uuid.uuid).state)

    @lf.task
    def first() -> None:
        return None

    engine = lf.load(lf.LinearFlow("f", first, check), backend=backend)
    engine.run()
    assert seen == [states.SUCCESS]


def test_uri_backend_is_closed_and_passed_backend_is_not() -> None:
    backend = lf.open_backend("memory://")
    lf.run(linear(), backend=backend)
    with backend.connect() as conn:
        assert len(conn.get_logbooks()) == 1


def test_book_argument_forms() -> None:
    backend = lf.open_backend("memory://")
    book = lf.LogBook("mine")
    assert lf.load(linear(), backend=backend, book=book).book is book
    assert lf.load(linear(), backend=backend, book="named").book.name == "named"
    assert lf.load(linear(), backend=backend).book.name == "abc"
