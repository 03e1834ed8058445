"""Black-box acceptance tests from API.md: Tasks, Retry, Flows, States, Errors.

Only ``import ledgerflow as lf`` and the names API.md documents are used, so a
failure here means the code and the public contract disagree.  Running and
resume are in ``test_api_contract_running.py`` / ``test_api_contract_resume.py``.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

import ledgerflow as lf
from tests.engine.contract_helpers import (
    CALLS,
    Boom,
    Rec,
    make_pair,
)


def test_subclass_name_defaults_to_qualname_and_version_to_1_0() -> None:
    class Add(lf.Task):
        def execute(self, a: int, b: int = 2) -> int:
            return a + b

    t = Add()
    assert t.name == Add.__qualname__
    assert t.version == "1.0"
    assert Add(name="n", version="2.1").version == "2.1"
    assert lf.run(lf.LinearFlow("f", Add(provides="s")), store={"a": 1}) == {"s": 3}


def test_task_constructor_keywords_and_requires() -> None:
    class Any_(lf.Task):
        def execute(self, **inputs: Any) -> Any:
            return sorted(inputs.items())

    t = Any_(name="t", provides="out", requires=["p", "q"])
    assert lf.run(lf.LinearFlow("f", t), store={"p": 1, "q": 2, "r": 3}) == {
        "out": [("p", 1), ("q", 2)]
    }
    with pytest.raises(lf.MissingInputsError):
        lf.load(lf.LinearFlow("f", Any_(name="t", requires=["p"])))


def test_decorator_bare_and_with_arguments_call_through() -> None:
    @lf.task
    def plain(a: int) -> int:
        return a * 2

    @lf.task(name="named", provides="v", version="3.2")
    def other(a: int) -> int:
        return a + 1

    assert isinstance(plain, lf.Task) and isinstance(other, lf.Task)
    assert plain.name == "plain" and plain.version == "1.0"
    assert other.name == "named" and other.version == "3.2"
    assert plain(4) == 8 and other(a=1) == 2
    assert lf.run(lf.LinearFlow("f", plain, other), store={"a": 5}) == {"v": 6}


@pytest.mark.parametrize(
    ("provides", "result", "expected"),
    [
        (None, 1, {}),
        ("whole", (1, 2), {"whole": (1, 2)}),
        (("a", "b"), (1, 2), {"a": 1, "b": 2}),
        (("a", "b"), [1, 2], {"a": 1, "b": 2}),
        ({"a": 0, "b": 1}, [10, 20], {"a": 10, "b": 20}),
        ({"a": "k"}, {"k": "v", "z": 0}, {"a": "v"}),
    ],
)
def test_provides_forms(provides: Any, result: Any, expected: dict[str, Any]) -> None:
    @lf.task(provides=provides)
    def make() -> Any:
        return result

    out = lf.run(lf.LinearFlow("f", make))
    assert {k: (tuple(v) if isinstance(v, list) else v) for k, v in out.items()} == {
        k: (tuple(v) if isinstance(v, list) else v) for k, v in expected.items()
    }


def test_provided_symbols_feed_later_tasks_after_unpacking() -> None:
    @lf.task(provides=("a", "b"))
    def split() -> tuple[int, int]:
        return 3, 4

    @lf.task(provides="s")
    def add(a: int, b: int) -> int:
        return a + b

    assert lf.run(lf.LinearFlow("f", split, add))["s"] == 7


@pytest.mark.parametrize(
    ("result", "complaint"),
    [((1, 2, 3), "not a tuple of 3"), ([1], "not a list of 1"), (7, "not a int")],
)
def test_unpacking_a_result_of_the_wrong_shape_fails_the_task(result: Any, complaint: str) -> None:
    @lf.task(provides=("a", "b"))
    def split() -> Any:
        return result

    engine = lf.load(lf.LinearFlow("f", split), backend="memory://")
    with pytest.raises(lf.FlowFailed) as info:
        engine.run()
    failure = info.value.failures["split"]
    assert failure.matches(ValueError)
    assert "2 values to unpack" in failure.message and complaint in failure.message
    assert engine.storage.task_state("split") == "REVERTED"


def test_rebind_dict_and_list() -> None:
    @lf.task(provides="d", rebind={"a": "left"})
    def minus(a: int, b: int) -> int:
        return a - b

    @lf.task(provides="e", rebind=["second", "first"])
    def minus2(a: int, b: int) -> int:
        return a - b

    out = lf.run(
        lf.UnorderedFlow("f", minus, minus2), store={"left": 10, "b": 1, "first": 1, "second": 5}
    )
    assert out == {"d": 9, "e": 4}


def test_optional_parameter_gets_symbol_when_provided_else_default() -> None:
    @lf.task(provides="got")
    def opt(a: int, b: int = 5) -> tuple[int, int]:
        return a, b

    assert list(lf.run(lf.LinearFlow("f", opt), store={"a": 1})["got"]) == [1, 5]
    assert list(lf.run(lf.LinearFlow("f", opt), store={"a": 1, "b": 7})["got"]) == [1, 7]

    @lf.task(provides="b")
    def give_b() -> int:
        return 9

    assert list(lf.run(lf.LinearFlow("f", give_b, opt), store={"a": 1})["got"]) == [1, 9]

    @lf.task(provides="got2", rebind={"b": "bee"})
    def opt2(a: int, b: int = 5) -> list[int]:
        return [a, b]

    assert lf.run(lf.LinearFlow("f", opt2), store={"a": 1, "b": 2})["got2"] == [1, 5]
    assert lf.run(lf.LinearFlow("f", opt2), store={"a": 1, "bee": 3})["got2"] == [1, 3]


def test_decorated_revert_gets_inputs_result_and_flow_failures() -> None:
    seen: dict[str, Any] = {}

    @lf.task(provides="vm")
    def create_vm(image: str) -> str:
        return f"vm-{image}"

    @create_vm.revert
    def delete_vm(image: str, *, result: Any, flow_failures: Any) -> None:
        seen.update(image=image, result=result, failures=dict(flow_failures))

    @lf.task
    def explode(vm: str) -> None:
        raise Boom("no network")

    with pytest.raises(lf.FlowFailed) as info:
        lf.run(lf.LinearFlow("f", create_vm, explode), store={"image": "ubuntu"})
    assert seen["image"] == "ubuntu" and seen["result"] == "vm-ubuntu"
    assert set(seen["failures"]) == {"explode"}
    assert isinstance(seen["failures"]["explode"], lf.Failure)
    assert seen["failures"]["explode"].matches(Boom)
    assert set(info.value.failures) == {"explode"}
    assert isinstance(info.value.__cause__, Boom)


def test_subclass_revert_of_the_failed_task_gets_its_own_failure() -> None:
    got: list[Any] = []

    class Fails(lf.Task):
        def execute(self, x: int) -> int:
            raise Boom(f"bad {x}")

        def revert(self, *, result: Any, flow_failures: Any, **inputs: Any) -> None:
            got.append((result, inputs, dict(flow_failures)))

    with pytest.raises(lf.FlowFailed):
        lf.run(lf.LinearFlow("f", Fails(name="fails")), store={"x": 1})
    (result, inputs, failures) = got[0]
    assert isinstance(result, lf.Failure) and result.matches(Boom)
    assert "bad 1" in result.message
    assert inputs == {"x": 1}
    assert failures["fails"].message == result.message


def test_retry_attempts_count_every_try() -> None:
    @lf.task(retry=lf.Retry(attempts=3, backoff=0.0))
    def flaky() -> None:
        CALLS.append("try")
        raise Boom("again")

    engine = lf.load(lf.LinearFlow("f", flaky))
    with pytest.raises(lf.FlowFailed):
        engine.run()
    assert CALLS == ["try"] * 3
    td = engine.flow_detail.find(next(iter(engine.flow_detail)).uuid)
    assert td is not None and td.attempts == 3


def test_retry_defaults() -> None:
    r = lf.Retry()
    assert (r.attempts, r.backoff, r.max_backoff) == (3, 0.5, 30.0)
    assert tuple(r.on) == (Exception,)


def test_retry_succeeds_on_a_later_try() -> None:
    @lf.task(provides="v", retry=lf.Retry(attempts=3, backoff=0.0))
    def flaky() -> int:
        CALLS.append("try")
        if len(CALLS) < 3:
            raise Boom("again")
        return 42

    assert lf.run(lf.LinearFlow("f", flaky)) == {"v": 42}
    assert len(CALLS) == 3


def test_exception_not_in_on_is_not_retried() -> None:
    @lf.task(retry=lf.Retry(attempts=5, backoff=0.0, on=(KeyError,)))
    def wrong() -> None:
        CALLS.append("try")
        raise Boom("not retried")

    with pytest.raises(lf.FlowFailed) as info:
        lf.run(lf.LinearFlow("f", wrong))
    assert CALLS == ["try"]
    assert info.value.failures["wrong"].matches(Boom)


def test_retry_waits_follow_the_formula_capped_by_max_backoff() -> None:
    stamps: list[float] = []

    # backoff=0.1: waits 0.1 then 0.2; a cap of 0.15 makes the second one 0.15.
    @lf.task(retry=lf.Retry(attempts=3, backoff=0.1, max_backoff=0.15))
    def slow() -> None:
        stamps.append(time.monotonic())
        raise Boom("x")

    with pytest.raises(lf.FlowFailed):
        lf.run(lf.LinearFlow("f", slow))
    assert len(stamps) == 3
    assert stamps[1] - stamps[0] >= 0.1
    assert stamps[2] - stamps[1] >= 0.15


@pytest.mark.timeout(30)
def test_max_backoff_caps_a_huge_backoff() -> None:
    @lf.task(retry=lf.Retry(attempts=2, backoff=1000.0, max_backoff=0.01))
    def slow() -> None:
        CALLS.append("try")
        raise Boom("x")

    with pytest.raises(lf.FlowFailed):
        lf.run(lf.LinearFlow("f", slow))
    assert CALLS == ["try", "try"]


def test_flow_retry_reverts_and_reruns_its_tasks() -> None:
    class Step(lf.Task):
        def execute(self) -> None:
            CALLS.append(f"run {self.name}")
            if self.name == "b" and CALLS.count("run b") < 3:
                raise Boom("b fails twice")

        def revert(self, *, result: Any, flow_failures: Any, **inputs: Any) -> None:
            CALLS.append(f"revert {self.name}")

    flow = lf.LinearFlow(
        "outer",
        lf.LinearFlow(
            "inner", Step(name="a"), Step(name="b"), retry=lf.Retry(attempts=3, backoff=0)
        ),
    )
    lf.run(flow)
    assert CALLS.count("run a") == 3 and CALLS.count("run b") == 3
    assert CALLS[:4] == ["run a", "run b", "revert b", "revert a"]


def _const(name: str, provides: str | None = None, **kw: Any) -> lf.Task:
    class Const(lf.Task):
        def execute(self, **inputs: Any) -> str:
            CALLS.append(self.name)
            return self.name

    return Const(name=name, provides=provides, **kw)


def test_flow_add_returns_the_flow_and_nests() -> None:
    inner = lf.UnorderedFlow("inner")
    outer = lf.LinearFlow("outer")
    assert outer.add(_const("a"), inner) is outer
    assert inner.add(_const("b")) is inner
    lf.run(outer)
    assert sorted(CALLS) == ["a", "b"]


def test_linear_flow_runs_in_order() -> None:
    lf.run(lf.LinearFlow("f", _const("c"), _const("a"), _const("b")))
    assert CALLS == ["c", "a", "b"]


def test_graph_flow_orders_by_requires_and_links() -> None:
    late = _const("late", requires=["sym"])
    early = _const("early", provides="sym")
    free = _const("free")
    flow = lf.GraphFlow("g", late, free, early)
    flow.link(free, early)
    lf.run(flow)
    assert CALLS.index("early") < CALLS.index("late")
    assert CALLS.index("free") < CALLS.index("early")


def test_duplicate_names_raise_value_error_naming_it() -> None:
    flow = lf.LinearFlow("f", _const("twice"), lf.UnorderedFlow("sub", _const("twice")))
    with pytest.raises(ValueError, match="twice") as info:
        lf.load(flow)
    assert not isinstance(info.value, lf.MissingInputsError)


def test_cycle_raises_value_error_naming_its_tasks() -> None:
    a = _const("alpha", provides="x", requires=["y"])
    b = _const("beta", provides="y", requires=["x"])
    with pytest.raises(ValueError) as info:
        lf.load(lf.GraphFlow("g", a, b, _const("gamma")))
    assert "alpha" in str(info.value) and "beta" in str(info.value)
    assert "gamma" not in str(info.value)


def test_cycle_from_links_is_a_value_error() -> None:
    a, b = _const("alpha"), _const("beta")
    flow = lf.GraphFlow("g", a, b).link(a, b).link(b, a)
    with pytest.raises(ValueError, match="alpha"):
        lf.load(flow)


def test_structure_is_checked_before_inputs() -> None:
    dup = lf.LinearFlow("f", _const("same", requires=["nowhere"]), _const("same"))
    with pytest.raises(ValueError, match="same") as info:
        lf.load(dup)
    assert not isinstance(info.value, lf.MissingInputsError)
    a = _const("alpha", provides="x", requires=["y", "nowhere"])
    b = _const("beta", provides="y", requires=["x"])
    with pytest.raises(ValueError) as info2:
        lf.load(lf.GraphFlow("g", a, b))
    assert not isinstance(info2.value, lf.MissingInputsError)
    assert "alpha" in str(info2.value)


def test_linear_flow_only_uses_earlier_providers() -> None:
    flow = lf.LinearFlow("f", _const("user", requires=["sym"]), _const("giver", provides="sym"))
    with pytest.raises(lf.MissingInputsError, match="user"):
        lf.load(flow)
    # With the store providing it, the store's value is used, not the later task's.
    seen: list[Any] = []

    @lf.task
    def user(sym: str) -> None:
        seen.append(sym)

    lf.run(lf.LinearFlow("f", user, _const("giver", provides="sym")), store={"sym": "store"})
    assert seen == ["store"]


def test_missing_inputs_names_each_task_and_symbol() -> None:
    flow = lf.UnorderedFlow(
        "f", _const("one", requires=["apple"]), _const("two", requires=["banana", "cherry"])
    )
    with pytest.raises(lf.MissingInputsError) as info:
        lf.load(flow)
    text = str(info.value)
    for word in ("one", "two", "apple", "banana", "cherry"):
        assert word in text
    assert isinstance(info.value, lf.LedgerflowError)


def test_missing_inputs_before_any_task_runs() -> None:
    flow = lf.LinearFlow("f", _const("ok"), _const("needs", requires=["zzz"]))
    with pytest.raises(lf.MissingInputsError):
        lf.run(flow)
    assert CALLS == []


def test_states_are_their_own_names() -> None:
    names = [
        "PENDING",
        "RUNNING",
        "SUCCESS",
        "FAILURE",
        "RETRYING",
        "REVERTING",
        "REVERTED",
        "REVERT_FAILURE",
        "SUSPENDING",
        "SUSPENDED",
    ]
    for name in names:
        value = getattr(lf.states, name)
        assert value == name and isinstance(value, str)


def test_every_error_derives_from_ledgerflow_error() -> None:
    for name in (
        "MissingInputsError",
        "NotFound",
        "BackendNotFound",
        "StateTransitionError",
        "SerializationError",
        "VersionMismatchError",
        "ConflictError",
        "StorageError",
        "FlowFailed",
    ):
        assert issubclass(getattr(lf, name), lf.LedgerflowError), name


def test_illegal_transition_raises_state_transition_error() -> None:
    engine = lf.load(make_pair(), store={"k": 1})
    engine.run()
    with pytest.raises(lf.StateTransitionError):
        engine.storage.set_flow_state(lf.states.RUNNING)


def test_retry_state_and_events() -> None:
    @lf.task(retry=lf.Retry(attempts=2, backoff=0))
    def once() -> None:
        CALLS.append("x")
        if len(CALLS) == 1:
            raise Boom("first")

    engine = lf.load(lf.LinearFlow("f", once))
    events: list[Any] = []
    engine.on_change(events.append)
    engine.run()
    assert [e.state for e in events if e.kind == "task"] == [
        "RUNNING",
        "RETRYING",
        "RUNNING",
        "SUCCESS",
    ]
    (td,) = list(engine.flow_detail)
    assert td.attempts == 2 and td.failure is None


def test_flow_retry_gives_up_after_its_attempts_and_reverts_everything() -> None:
    Rec.FAIL = {"b"}
    flow = lf.LinearFlow(
        "outer",
        Rec(name="before", provides="p"),
        lf.LinearFlow("inner", Rec(name="a"), Rec(name="b"), retry=lf.Retry(attempts=2, backoff=0)),
        Rec(name="after"),
    )
    engine = lf.load(flow)
    with pytest.raises(lf.FlowFailed) as info:
        engine.run()
    assert CALLS == [
        "run before",
        "run a",
        "run b",
        "revert b",
        "revert a",
        "run a",
        "run b",
        "revert b",
        "revert a",
        "revert before",
    ]
    assert set(info.value.failures) == {"b"}
    by = {td.name: td for td in engine.flow_detail}
    assert by["after"].state == "PENDING"
    assert by["a"].attempts == 2 and by["before"].attempts == 1
    assert engine.flow_detail.state == "REVERTED"


def test_flow_retry_respects_on() -> None:
    Rec.FAIL = {"b"}
    flow = lf.LinearFlow(
        "outer",
        lf.UnorderedFlow("inner", Rec(name="b"), retry=lf.Retry(attempts=3, on=(KeyError,))),
    )
    with pytest.raises(lf.FlowFailed):
        lf.run(flow)
    assert CALLS == ["run b", "revert b"]


def test_nested_flows_resolve_symbols_outward() -> None:
    seen: list[Any] = []

    @lf.task
    def user(x: int) -> None:
        seen.append(x)

    @lf.task(provides="x")
    def giver() -> int:
        return 7

    lf.run(lf.LinearFlow("outer", giver, lf.UnorderedFlow("u", user)))
    lf.run(lf.GraphFlow("g", lf.LinearFlow("sub", user), giver))
    assert seen == [7, 7]


@pytest.mark.parametrize("kind", [lf.LinearFlow, lf.UnorderedFlow])
def test_graph_orders_a_provider_before_a_subflow_that_needs_it_from_outside(
    kind: type[lf.Flow],
) -> None:
    seen: list[Any] = []

    @lf.task
    def user(x: str) -> None:
        seen.append(x)

    @lf.task(provides="x")
    def maker() -> str:
        return "maker"

    @lf.task(provides="x")
    def giver() -> str:
        return "giver"

    # user cannot see maker (later in a LinearFlow, a sibling in an UnorderedFlow):
    # its x comes from giver, so giver must run first.
    lf.run(lf.GraphFlow("g", kind("sub", user, maker), giver))
    assert seen == ["giver"]


def test_task_decorator_takes_its_arguments_positionally_too() -> None:
    @lf.task("renamed", "out")
    def f(a: int) -> int:
        return a + 1

    assert f.name == "renamed"
    assert lf.run(lf.LinearFlow("fl", f), store={"a": 1}) == {"out": 2}
    with pytest.raises(TypeError, match="name"):
        lf.task(42)  # type: ignore[call-overload]


def test_requires_as_one_string_is_one_symbol_and_rebind_string_is_refused() -> None:
    class Kw(lf.Task):
        def execute(self, **inputs: Any) -> Any:
            return inputs

    assert lf.run(
        lf.LinearFlow("f", Kw(name="k", provides="o", requires="image")), store={"image": 1}
    ) == {"o": {"image": 1}}
    with pytest.raises(TypeError, match="rebind"):
        Kw(name="k", rebind="ab")


def test_an_unserializable_result_is_retried_when_its_error_is_in_on() -> None:
    @lf.task(provides="v", retry=lf.Retry(attempts=3, backoff=0))
    def sometimes() -> Any:
        CALLS.append("try")
        return object() if len(CALLS) < 3 else "fine"

    assert lf.run(lf.LinearFlow("f", sometimes)) == {"v": "fine"}
    assert len(CALLS) == 3
    CALLS.clear()

    @lf.task(provides="v", retry=lf.Retry(attempts=3, backoff=0, on=(Boom,)))
    def never() -> Any:
        CALLS.append("try")
        return object()

    with pytest.raises(lf.FlowFailed) as info:
        lf.run(lf.LinearFlow("f", never))
    assert CALLS == ["try"]
    assert info.value.failures["never"].matches(lf.SerializationError)
