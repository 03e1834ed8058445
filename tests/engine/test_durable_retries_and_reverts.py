"""Durable retries and reverts: budgets survive a resume, failed reverts are not forgotten."""

from __future__ import annotations

from pathlib import Path

import pytest

import ledgerflow as lf


class Flaky(lf.Task):
    """Fails every time; counts its executions."""

    calls = 0

    def execute(self) -> None:
        type(self).calls += 1
        raise ConnectionError(f"try {type(self).calls}")


def _suspend_on(engine: lf.Engine, task: str, state: str, times: int = 1) -> None:
    """Suspend ``engine`` the ``times``-th time ``task`` enters ``state``."""
    seen = []

    def listener(event: lf.StateChange) -> None:
        if event.name == task and event.state == state:
            seen.append(event)
            if len(seen) == times:
                engine.suspend()

    engine.on_change(listener)


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    Flaky.calls = 0


def test_task_retry_budget_carries_over_a_suspend(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'r.db'}"

    def flow() -> lf.Flow:
        return lf.LinearFlow("f", Flaky(name="flaky", retry=lf.Retry(attempts=3, backoff=0.001)))

    engine = lf.load(flow(), backend=uri)
    _suspend_on(engine, "flaky", "RETRYING")
    engine.run()
    assert engine.flow_detail.state == "SUSPENDED" and Flaky.calls == 1
    with pytest.raises(lf.FlowFailed):
        lf.resume(uri, engine.flow_detail.uuid, flow=flow())
    assert Flaky.calls == 3  # at most 3 executions in all, not 1 + 3
    with lf.open_backend(uri) as backend, backend.connect() as conn:
        stored = conn.get_flow_details(engine.flow_detail.uuid)
    task = stored.find_by_name("flaky")
    assert task is not None and task.attempts == 3 and task.state == "REVERTED"


def test_subflow_retry_budget_carries_over_a_suspend(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 's.db'}"

    def flow() -> lf.Flow:
        inner = lf.LinearFlow("inner", Flaky(name="flaky"), retry=lf.Retry(attempts=3, backoff=0))
        return lf.LinearFlow("outer", inner)

    engine = lf.load(flow(), backend=uri)
    # The subflow's first retry puts the task back to PENDING: stop right there.
    _suspend_on(engine, "flaky", "PENDING")
    engine.run()
    assert engine.flow_detail.state == "SUSPENDED" and Flaky.calls == 1
    with pytest.raises(lf.FlowFailed):
        lf.resume(uri, engine.flow_detail.uuid, flow=flow())
    assert Flaky.calls == 3  # the subflow ran 3 times in all, not 1 + 3


def test_a_reverted_flow_resumed_gets_fresh_budgets(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'n.db'}"

    def flow() -> lf.Flow:
        inner = lf.LinearFlow(
            "inner", Flaky(name="flaky", retry=lf.Retry(attempts=2, backoff=0)),
            retry=lf.Retry(attempts=2, backoff=0),
        )  # fmt: skip
        return lf.LinearFlow("outer", inner)

    engine = lf.load(flow(), backend=uri)
    with pytest.raises(lf.FlowFailed):
        engine.run()
    assert Flaky.calls == 4  # 2 subflow runs x 2 tries
    with pytest.raises(lf.FlowFailed):
        lf.resume(uri, engine.flow_detail.uuid, flow=flow())
    assert Flaky.calls == 8  # "runs again from the start": the same budgets again


def test_a_revert_that_failed_during_a_subflow_retry_is_not_called_again() -> None:
    calls: list[str] = []

    @lf.task(provides="x")
    def first() -> int:
        calls.append("first")
        return 1

    @first.revert
    def _undo_first(*, result: object, flow_failures: object) -> None:
        calls.append("revert first")
        raise RuntimeError("cannot undo")

    @lf.task
    def second(x: int) -> None:
        calls.append("second")
        raise ValueError("boom")

    flow = lf.LinearFlow("inner", first, second, retry=lf.Retry(attempts=2, backoff=0))
    engine = lf.load(lf.LinearFlow("outer", flow), backend="memory://")
    with pytest.raises(lf.FlowFailed):
        engine.run()
    # The subflow retry reverts first, whose revert fails: no retry then, and the flow's
    # own revert must not call that revert a second time.
    assert calls == ["first", "second", "revert first"]
    assert engine.storage.task_state("first") == "REVERT_FAILURE"
    assert engine.flow_detail.state == "FAILURE"


def test_resuming_a_failure_flow_retries_the_failed_reverts_before_anything_runs(
    tmp_path: Path,
) -> None:
    uri = f"sqlite:///{tmp_path / 'f.db'}"
    calls: list[str] = []
    broken = {"revert": True, "work": True}

    def flow() -> lf.Flow:
        @lf.task(provides="vm")
        def create() -> str:
            calls.append("create")
            return "vm-1"

        @create.revert
        def _delete(*, result: object, flow_failures: object) -> None:
            calls.append("delete")
            if broken["revert"]:
                raise RuntimeError("the cloud API is down")

        @lf.task
        def configure(vm: str) -> None:
            calls.append("configure")
            if broken["work"]:
                raise ValueError("bad config")

        return lf.LinearFlow("boot", create, configure)

    engine = lf.load(flow(), backend=uri)
    with pytest.raises(lf.FlowFailed):
        engine.run()
    assert engine.flow_detail.state == "FAILURE" and calls == ["create", "configure", "delete"]

    broken["revert"] = False  # the operator fixed the cloud API
    calls.clear()
    with pytest.raises(lf.FlowFailed):
        lf.resume(uri, engine.flow_detail.uuid, flow=flow())
    assert calls == ["delete"]  # the leaked VM is deleted; nothing ran forward on top of it
    with lf.open_backend(uri) as backend, backend.connect() as conn:
        stored = conn.get_flow_details(engine.flow_detail.uuid)
    assert stored.state == "REVERTED"
    assert [t.state for t in stored] == ["REVERTED", "REVERTED"]
    assert [t.revert_failure for t in stored] == [None, None]  # cleared: the revert succeeded

    broken["work"] = False  # and the config: a REVERTED flow runs again from the start
    calls.clear()
    lf.resume(uri, engine.flow_detail.uuid, flow=flow())
    assert calls == ["create", "configure"]
