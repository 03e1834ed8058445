"""Honest flow checks before anything runs: ambiguous providers, vanished tasks, resumability."""

from __future__ import annotations

import uuid
import warnings
from pathlib import Path
from typing import Any

import pytest

import ledgerflow as lf
from ledgerflow import states


class T(lf.Task):
    """Returns its name and inputs."""

    def execute(self, **inputs: Any) -> str:
        return f"{self.name}({','.join(f'{k}={v}' for k, v in sorted(inputs.items()))})"


def make(name: str, provides: str | None = None, needs: tuple[str, ...] = ()) -> lf.Task:
    return T(name=name, provides=provides, requires=needs)


def test_a_graph_task_with_two_providers_of_its_symbol_is_refused() -> None:
    flow = lf.GraphFlow("g", make("a", "x"), make("b", "x"), make("c", "y", ("x",)))
    with pytest.raises(ValueError, match=r"graph flow 'g': task 'c' could take 'x' from both"):
        lf.load(flow)
    with pytest.raises(ValueError) as info:
        lf.load(flow)
    assert "'a'" in str(info.value) and "'b'" in str(info.value)


def test_a_subflow_providing_the_symbol_counts_as_a_provider() -> None:
    sub = lf.LinearFlow("sub", make("s1"), make("s2", "x"))
    flow = lf.GraphFlow("g", make("a", "x"), sub, make("c", "y", ("x",)))
    with pytest.raises(ValueError, match=r"'x' from both 'a' and 's2'"):
        lf.load(flow)


def test_a_provider_hidden_by_scope_stays_legal() -> None:
    inner = lf.LinearFlow("inner", make("b", "x"), make("c", "y", ("x",)))
    flow = lf.GraphFlow("g", make("a", "x"), inner)
    assert lf.run(flow)["y"] == "c(x=b())"  # c takes the x of its own flow


def test_two_graph_providers_nobody_reads_are_legal() -> None:
    assert lf.run(lf.GraphFlow("g", make("a", "x"), make("b", "x")))["x"] in ("a()", "b()")


def test_two_items_of_an_unordered_flow_providing_one_symbol_are_refused() -> None:
    flow = lf.UnorderedFlow("u", make("a", "x"), lf.LinearFlow("sub", make("b", "x")))
    with pytest.raises(
        ValueError, match=r"unordered flow 'u': 'x' is provided by both 'a' and 'b'"
    ):
        lf.load(flow)


def test_a_linear_flow_keeps_nearest_earlier_provider_wins() -> None:
    flow = lf.LinearFlow("l", make("a", "x"), make("b", "x"), make("c", "y", ("x",)))
    assert lf.run(flow)["y"] == "c(x=b())"


def test_ambiguous_providers_are_checked_before_inputs() -> None:
    flow = lf.GraphFlow("g", make("a", "x"), make("b", "x"), make("c", "y", ("x", "nowhere")))
    with pytest.raises(ValueError, match="from both") as info:
        lf.load(flow)
    assert not isinstance(info.value, lf.MissingInputsError)


# ---- resume against code that changed ---------------------------------------------
class Step(lf.Task):
    """Records its runs; fails while ``FAIL`` holds its name."""

    FAIL: set[str] = set()
    RUNS: list[str] = []

    def execute(self) -> str:
        type(self).RUNS.append(self.name)
        if self.name in type(self).FAIL:
            raise RuntimeError(f"{self.name} failed")
        return self.name


@pytest.fixture(autouse=True)
def _reset() -> None:
    Step.FAIL, Step.RUNS = set(), []


def _stored(uri: str, flow_uuid: str) -> lf.FlowDetail:
    with lf.open_backend(uri) as backend, backend.connect() as conn:
        return conn.get_flow_details(flow_uuid)


def _suspended_after_first(uri: str, *names: str) -> str:
    engine = lf.load(lf.LinearFlow("f", *(Step(name=n) for n in names)), backend=uri)

    def stop(event: lf.StateChange) -> None:
        if event.name == names[0] and event.state == states.SUCCESS:
            engine.suspend()

    engine.on_change(stop)
    engine.run()
    assert engine.flow_detail.state == states.SUSPENDED
    flow_uuid: str = engine.flow_detail.uuid
    return flow_uuid


def test_resume_refuses_code_that_lost_a_task_that_ran_and_writes_nothing(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'r.db'}"
    flow_uuid = _suspended_after_first(uri, "first", "second")
    before = _stored(uri, flow_uuid).to_dict()
    renamed = lf.LinearFlow("f", Step(name="first_renamed"), Step(name="second"))
    with pytest.raises(lf.NotResumableError) as info:
        lf.resume(uri, flow_uuid, flow=renamed)
    message = str(info.value)
    assert "'first' (SUCCESS, 1 attempt)" in message and "no longer has" in message
    assert isinstance(info.value, ValueError)
    assert _stored(uri, flow_uuid).to_dict() == before
    assert Step.RUNS == ["first"]


def test_stored_tasks_that_never_ran_and_vanished_are_dropped(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'd.db'}"
    flow_uuid = _suspended_after_first(uri, "first", "second", "third")
    changed = lf.LinearFlow("f", Step(name="first"), Step(name="second_v2"))
    assert lf.resume(uri, flow_uuid, flow=changed) == {}
    stored = _stored(uri, flow_uuid)
    assert stored.state == states.SUCCESS
    assert [(t.name, t.state) for t in stored] == [
        ("first", states.SUCCESS),
        ("second_v2", states.SUCCESS),
    ]
    assert Step.RUNS == ["first", "second_v2"]


# ---- what cannot be rebuilt from the store ------------------------------------------
def build_step_flow() -> lf.Flow:
    """A factory importable by its path."""
    return lf.LinearFlow("f", Step(name="only"))


def _in_main() -> lf.Flow:
    return build_step_flow()


_in_main.__module__ = "__main__"


def _nested_factory() -> Any:
    def factory() -> lf.Flow:
        return build_step_flow()

    return factory


@pytest.mark.parametrize(
    ("source", "why"),
    [
        (build_step_flow(), "it was given to lf.load as a flow object"),
        (lambda: build_step_flow(), "the factory is a lambda"),
        (_in_main, "defined in __main__"),
        (_nested_factory(), "is defined inside a function"),
    ],
    ids=["flow-object", "lambda", "main", "nested"],
)
def test_what_the_store_cannot_rebuild_warns_at_load_and_resume_says_why(
    tmp_path: Path, source: Any, why: str
) -> None:
    uri = f"sqlite:///{tmp_path / 'n.db'}"
    with pytest.warns(lf.NotResumableWarning, match=why) as caught:
        engine = lf.load(source, backend=uri)
    assert len(caught) == 1
    assert caught[0].filename == __file__  # points at the caller's line
    engine.suspend()
    engine.run()
    with pytest.raises(lf.NotResumableError) as info:
        lf.resume(uri, engine.flow_detail.uuid)
    assert why in str(info.value) and "pass flow=" in str(info.value)
    assert lf.resume(uri, engine.flow_detail.uuid, flow=build_step_flow()) == {}


def test_a_resumable_factory_or_a_memory_store_does_not_warn(
    tmp_path: Path, recwarn: pytest.WarningsRecorder
) -> None:
    lf.load(build_step_flow, backend=f"sqlite:///{tmp_path / 'ok.db'}")
    lf.load(build_step_flow(), backend="memory://")
    lf.load(build_step_flow())
    assert not [w for w in recwarn if issubclass(w.category, lf.NotResumableWarning)]


def _named_flow(name: str) -> lf.Flow:
    return lf.LinearFlow(name, Step(name="only"))


def _not_resumable(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, lf.NotResumableWarning)]


def test_not_resumable_warns_once_per_process_for_each_flow_and_reason(tmp_path: Path) -> None:
    # Under the default action: once for each (flow name, reason), whichever line loads
    # it, although opening a SQL backend resets Python's own once-per-line registry.
    uri = f"sqlite:///{tmp_path / 'once.db'}"
    name = f"once-{uuid.uuid4().hex}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(3):
            lf.load(_named_flow(name), backend=uri)
        lf.load(_named_flow(name), backend=uri)
        lf.run(_named_flow(name), backend=uri)
        lf.load(lambda: _named_flow(name), backend=uri)
        lf.load(_named_flow(name + "-other"), backend=uri)
    shown = _not_resumable(caught)
    assert len(shown) == 3, shown
    assert "as a flow object" in shown[0] and "a lambda" in shown[1]
    assert f"{name}-other" in shown[2]
    assert {w.filename for w in caught} == {__file__}  # the caller's line, even via lf.run


def test_not_resumable_warns_every_time_under_always_and_is_not_spent_by_ignore(
    tmp_path: Path,
) -> None:
    uri = f"sqlite:///{tmp_path / 'filters.db'}"
    name = f"filters-{uuid.uuid4().hex}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("ignore")
        lf.load(_named_flow(name), backend=uri)
        warnings.simplefilter("default")
        lf.load(_named_flow(name), backend=uri)  # the ignored one was never shown
        lf.load(_named_flow(name), backend=uri)
    assert len(_not_resumable(caught)) == 1
    with pytest.warns(lf.NotResumableWarning) as always:  # pytest.warns: "always"
        lf.load(_named_flow(name), backend=uri)
        lf.load(_named_flow(name), backend=uri)
    assert len(_not_resumable(list(always))) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error", lf.NotResumableWarning)
        with pytest.raises(lf.NotResumableWarning):
            lf.load(_named_flow(name), backend=uri)
