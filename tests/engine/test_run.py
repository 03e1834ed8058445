"""Running: revert order, retries, subflow retry, parallelism, listeners, serialization."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import ledgerflow as lf
from ledgerflow import states


class Recorder(lf.Task):
    """Appends ("execute"|"revert", name) to a shared log; fails when told to."""

    def __init__(self, name: str, log: list[tuple[str, str]], fail: bool = False, **kw: Any):
        super().__init__(name=name, **kw)
        self.log = log
        self.fail = fail

    def execute(self) -> str:
        self.log.append(("execute", self.name))
        if self.fail:
            raise RuntimeError(f"{self.name} broke")
        return self.name

    def revert(self, *, result: Any, flow_failures: Any, **inputs: Any) -> None:
        self.log.append(("revert", self.name))
        self.log.append(("result", repr(result)))


def states_of(engine: lf.Engine) -> dict[str, str]:
    return {td.name: td.state for td in engine.flow_detail}


def test_failure_reverts_newest_first_including_failed_task() -> None:
    log: list[tuple[str, str]] = []
    flow = lf.LinearFlow(
        "f",
        Recorder("a", log),
        Recorder("b", log),
        Recorder("c", log, fail=True),
        Recorder("d", log),
    )
    engine = lf.load(flow)
    with pytest.raises(lf.FlowFailed) as info:
        engine.run()
    reverts = [name for kind, name in log if kind == "revert"]
    assert reverts == ["c", "b", "a"]
    assert ("result", "'b'") in log
    failed_result = log[log.index(("revert", "c")) + 1][1]
    assert failed_result.startswith("Failure(")
    assert set(info.value.failures) == {"c"}
    assert isinstance(info.value.__cause__, RuntimeError)
    assert states_of(engine) == {
        "a": "REVERTED",
        "b": "REVERTED",
        "c": "REVERTED",
        "d": "PENDING",
    }
    assert engine.flow_detail.state == states.REVERTED
    assert engine.flow_detail.find_by_name("c").failure.message == "c broke"  # type: ignore[union-attr]


def test_revert_failure_makes_flow_failure() -> None:
    @lf.task
    def good() -> None:
        return None

    @good.revert
    def undo(*, result: Any, flow_failures: Any) -> None:
        raise OSError("cannot undo")

    @lf.task
    def bad() -> None:
        raise ValueError("nope")

    engine = lf.load(lf.LinearFlow("f", good, bad))
    with pytest.raises(lf.FlowFailed):
        engine.run()
    detail = engine.flow_detail.find_by_name("good")
    assert detail is not None and detail.state == states.REVERT_FAILURE
    assert detail.revert_failure is not None and detail.revert_failure.matches(OSError)
    assert engine.flow_detail.state == states.FAILURE


def test_task_retry_counts_attempts_and_backs_off() -> None:
    times: list[float] = []

    @lf.task(provides="v", retry=lf.Retry(attempts=3, backoff=0.02, max_backoff=0.03))
    def flaky() -> int:
        times.append(time.monotonic())
        if len(times) < 3:
            raise ConnectionError("again")
        return len(times)

    engine = lf.load(lf.LinearFlow("f", flaky))
    assert engine.run() == {"v": 3}
    assert engine.flow_detail.find_by_name("flaky").attempts == 3  # type: ignore[union-attr]
    assert times[1] - times[0] >= 0.02 and times[2] - times[1] >= 0.03


def test_retry_gives_up_after_attempts_and_skips_other_exceptions() -> None:
    calls = {"n": 0, "m": 0}

    @lf.task(retry=lf.Retry(attempts=2, backoff=0.001))
    def always() -> None:
        calls["n"] += 1
        raise ConnectionError("down")

    @lf.task(retry=lf.Retry(attempts=5, backoff=0.001, on=(ConnectionError,)))
    def typo() -> None:
        calls["m"] += 1
        raise KeyError("k")

    with pytest.raises(lf.FlowFailed):
        lf.run(lf.LinearFlow("f", always))
    with pytest.raises(lf.FlowFailed):
        lf.run(lf.LinearFlow("g", typo))
    assert calls == {"n": 2, "m": 1}


def test_subflow_retry_reverts_and_reruns_the_subflow() -> None:
    log: list[tuple[str, str]] = []
    runs = {"n": 0}

    class Flaky(lf.Task):
        def execute(self, first: str) -> str:
            runs["n"] += 1
            log.append(("execute", "flaky"))
            if runs["n"] < 2:
                raise RuntimeError("first time fails")
            return "ok"

    inner = lf.LinearFlow(
        "inner",
        Recorder("first", log, provides="first"),
        Flaky(name="flaky", provides="v"),
        retry=lf.Retry(attempts=2, backoff=0.001),
    )
    engine = lf.load(lf.LinearFlow("outer", Recorder("before", log), inner))
    assert engine.run()["v"] == "ok"
    executes = [n for k, n in log if k == "execute"]
    assert executes == ["before", "first", "flaky", "first", "flaky"]
    assert [n for k, n in log if k == "revert"] == ["first"]
    assert engine.flow_detail.find_by_name("first").attempts == 2  # type: ignore[union-attr]


def test_subflow_retry_exhausted_fails_whole_flow() -> None:
    log: list[tuple[str, str]] = []
    inner = lf.LinearFlow(
        "inner", Recorder("x", log, fail=True), retry=lf.Retry(attempts=2, backoff=0.001)
    )
    with pytest.raises(lf.FlowFailed):
        lf.run(lf.LinearFlow("outer", Recorder("a", log), inner))
    assert [n for k, n in log if k == "execute"] == ["a", "x", "x"]
    assert [n for k, n in log if k == "revert"] == ["x", "x", "a"]


def test_parallel_engine_runs_tasks_at_once() -> None:
    barrier = threading.Barrier(2, timeout=10)

    @lf.task(provides="a")
    def left() -> int:
        barrier.wait()
        return 1

    @lf.task(provides="b")
    def right() -> int:
        barrier.wait()
        return 2

    @lf.task(provides="c")
    def join(a: int, b: int) -> int:
        return a + b

    flow = lf.GraphFlow("g", left, right, join)
    assert lf.run(flow, engine="parallel", max_workers=2) == {"a": 1, "b": 2, "c": 3}


def test_parallel_failure_waits_and_reverts() -> None:
    log: list[tuple[str, str]] = []
    gate = threading.Event()

    class Slow(Recorder):
        def execute(self) -> str:
            gate.wait(5)
            return super().execute()

    class Breaks(Recorder):
        def execute(self) -> str:
            try:
                return super().execute()
            finally:
                gate.set()

    flow = lf.UnorderedFlow("u", Slow("slow", log), Breaks("bad", log, fail=True))
    engine = lf.load(flow, engine="parallel", max_workers=2)
    with pytest.raises(lf.FlowFailed):
        engine.run()
    assert sorted(n for k, n in log if k == "revert") == ["bad", "slow"]
    assert set(states_of(engine).values()) == {"REVERTED"}


def test_listeners_see_every_change_and_a_raising_one_is_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events: list[lf.StateChange] = []

    @lf.task(provides="x")
    def one() -> int:
        return 1

    def broken(event: lf.StateChange) -> None:
        raise RuntimeError("listener bug")

    engine = lf.load(lf.LinearFlow("f", one))
    engine.on_change(broken)
    engine.on_change(events.append)
    assert engine.run() == {"x": 1}
    seen = [(e.kind, e.name, e.state) for e in events]
    assert seen == [
        ("flow", "f", "RUNNING"),
        ("task", "one", "RUNNING"),
        ("task", "one", "SUCCESS"),
        ("flow", "f", "SUCCESS"),
    ]
    assert events[0].task_uuid is None and events[1].task_uuid is not None
    assert all(e.flow_uuid == engine.flow_detail.uuid for e in events)
    assert "listener bug" in caplog.text


def test_unserializable_result_fails_task_with_serialization_error() -> None:
    log: list[tuple[str, str]] = []

    @lf.task(provides="bad")
    def weird() -> object:
        return object()

    backend = lf.open_backend("memory://")
    engine = lf.load(lf.LinearFlow("f", Recorder("a", log), weird), backend=backend)
    with pytest.raises(lf.FlowFailed) as info:
        engine.run()
    assert info.value.failures["weird"].matches(lf.SerializationError)
    assert isinstance(info.value.__cause__, lf.SerializationError)
    with backend.connect() as conn:
        stored = conn.get_flow_details(engine.flow_detail.uuid)
    task = stored.find_by_name("weird")
    assert task is not None and task.state == states.REVERTED and task.result is None
    assert task.failure is not None and task.failure.matches(lf.SerializationError)
    assert [n for k, n in log if k == "revert"] == ["a"]


class _Unregistered:
    """A class no one registered with lf.register_type: its instances cannot be stored."""


def test_unserializable_checkpoint_fails_task() -> None:
    @lf.task
    def bad_checkpoint() -> None:
        lf.current_task().checkpoint([_Unregistered()])

    with pytest.raises(lf.FlowFailed) as info:
        lf.run(lf.LinearFlow("f", bad_checkpoint))
    assert info.value.failures["bad_checkpoint"].matches(lf.SerializationError)


def test_current_task_outside_a_task_is_lookup_error() -> None:
    with pytest.raises(LookupError):
        lf.current_task()


def test_checkpoint_survives_a_retry() -> None:
    seen: list[Any] = []

    @lf.task(provides="v", retry=lf.Retry(attempts=2, backoff=0.001))
    def long_job() -> int:
        ctx = lf.current_task()
        seen.append(ctx.last_checkpoint)
        if ctx.last_checkpoint is None:
            ctx.checkpoint({"done": 5})
            raise RuntimeError("crash half way")
        return int(ctx.last_checkpoint["done"]) + 1

    backend = lf.open_backend("memory://")
    engine = lf.load(lf.LinearFlow("f", long_job), backend=backend, save="final")
    assert engine.run() == {"v": 6}
    assert seen == [None, {"done": 5}]


def test_checkpoint_is_written_through_under_final_policy() -> None:
    backend = lf.open_backend("memory://")
    stored: list[Any] = []

    @lf.task
    def job() -> None:
        lf.current_task().checkpoint(7)
        with backend.connect() as conn:
            uuid = lf.current_task().task_uuid
            stored.append(conn.get_task_details(uuid).checkpoint)

    lf.run(lf.LinearFlow("f", job), backend=backend, save="final")
    assert stored == [7]


def test_process_pool_executor_runs_importable_tasks() -> None:
    from concurrent.futures import ProcessPoolExecutor

    from tests.engine import flows_for_crash

    with ProcessPoolExecutor(2) as pool:
        out = lf.run(flows_for_crash.small_graph(), engine="parallel", executor=pool)
    assert out == {"a": 1, "b": 2, "c": 3}


@lf.task
def needs_context() -> str:
    """Fails outside a thread or the serial engine: there is no current task there."""
    try:
        lf.current_task()
    except LookupError:
        return "no context"
    return "context"


def test_current_task_is_available_in_thread_pool_and_serial() -> None:
    flow = lf.LinearFlow("f", needs_context)
    backend = lf.open_backend("memory://")
    for engine in ("serial", "parallel"):
        run = lf.load(flow, backend=backend, engine=engine)
        run.run()
        detail = run.flow_detail.find_by_name("needs_context")
        assert detail is not None and detail.result == "context"


def test_bad_engine_and_save_arguments_are_refused() -> None:
    flow = lf.LinearFlow("f", needs_context)
    with pytest.raises(ValueError, match="engine"):
        lf.load(flow, engine="warp")
    with pytest.raises(ValueError, match="save"):
        lf.load(flow, save="sometimes")
    with pytest.raises(lf.SerializationError):
        lf.load(flow, store={"x": object()})
