"""Compiling: structure errors before inputs, missing inputs, scopes."""

from __future__ import annotations

import pytest

import ledgerflow as lf


def make(name: str, provides: str | None = None, needs: tuple[str, ...] = ()) -> lf.Task:
    """A task named ``name`` needing ``needs`` and providing ``provides``."""

    class T(lf.Task):
        def execute(self, **inputs: object) -> str:
            return f"{name}({','.join(f'{k}={v}' for k, v in sorted(inputs.items()))})"

    return T(name=name, provides=provides, requires=needs)


def test_duplicate_names_named() -> None:
    flow = lf.LinearFlow("f", make("a"), lf.UnorderedFlow("u", make("b"), make("a")))
    with pytest.raises(ValueError, match="duplicate task name 'a'"):
        lf.load(flow)


def test_cycle_names_tasks() -> None:
    a, b, c = make("a", "x", ("z",)), make("b", "y", ("x",)), make("c", "z", ("y",))
    with pytest.raises(ValueError, match="cycle") as info:
        lf.load(lf.GraphFlow("g", a, b, c))
    for name in "abc":
        assert name in str(info.value)


def test_explicit_link_cycle() -> None:
    a, b = make("a"), make("b")
    with pytest.raises(ValueError, match=r"cycle.*a.*b|cycle.*b.*a"):
        lf.load(lf.GraphFlow("g", a, b).link(a, b).link(b, a))


def test_structure_checked_before_inputs() -> None:
    flow = lf.LinearFlow("f", make("a", needs=("missing",)), make("a"))
    with pytest.raises(ValueError, match="duplicate") as info:
        lf.load(flow)
    assert not isinstance(info.value, lf.MissingInputsError)


def test_missing_inputs_name_each_task_and_symbol() -> None:
    flow = lf.LinearFlow("f", make("a", needs=("p",)), make("b", needs=("q", "r")))
    with pytest.raises(lf.MissingInputsError) as info:
        lf.load(flow, store={"r": 1})
    assert info.value.missing == {"a": ["p"], "b": ["q"]}
    assert "'a' needs 'p'" in str(info.value)


def test_linear_flow_cannot_use_later_provider() -> None:
    flow = lf.LinearFlow("f", make("a", needs=("x",)), make("b", provides="x"))
    with pytest.raises(lf.MissingInputsError, match="'a' needs 'x'"):
        lf.load(flow)


def test_unordered_siblings_do_not_feed_each_other() -> None:
    flow = lf.UnorderedFlow("f", make("a", provides="x"), make("b", needs=("x",)))
    with pytest.raises(lf.MissingInputsError):
        lf.load(flow)


def test_nested_scopes_nearest_provider_wins() -> None:
    inner = lf.LinearFlow(
        "inner", make("i1", provides="v"), make("i2", provides="w", needs=("v", "top"))
    )
    flow = lf.LinearFlow(
        "outer",
        make("o1", provides="top"),
        make("o2", provides="v"),
        inner,
        make("o3", provides="end", needs=("v", "w")),
    )
    out = lf.run(flow)
    assert out["w"] == "i2(top=o1(),v=i1())"
    # o3 sees the latest v before it: i1's, inside the subflow that ran before it
    assert out["end"] == "o3(v=i1(),w=i2(top=o1(),v=i1()))"


def test_graph_infers_order_from_symbols() -> None:
    flow = lf.GraphFlow("g", make("c", "z", ("y",)), make("b", "y", ("x",)), make("a", "x"))
    assert lf.run(flow)["z"] == "c(y=b(x=a()))"


def test_optional_parameter_gets_symbol_or_default() -> None:
    @lf.task(provides="out")
    def uses(a: int, b: int = 10) -> int:
        return a + b

    assert lf.run(lf.LinearFlow("f", uses), store={"a": 1}) == {"out": 11}
    assert lf.run(lf.LinearFlow("f", uses), store={"a": 1, "b": 2}) == {"out": 3}


def test_graph_link_orders_tasks_and_add_returns_the_flow() -> None:
    log: list[str] = []

    class Log(lf.Task):
        def execute(self) -> None:
            log.append(self.name)

    first, second = Log(name="first"), Log(name="second")
    flow = lf.GraphFlow("g")
    assert flow.add(second, first) is flow
    flow.link(first, second)
    lf.run(flow)
    assert log == ["first", "second"]


def test_link_of_unknown_item_is_refused() -> None:
    with pytest.raises(ValueError, match="not an item"):
        lf.GraphFlow("g", make("a")).link(make("a"), make("b"))


def test_same_task_object_twice_is_a_duplicate() -> None:
    task = make("t")
    with pytest.raises(ValueError, match="duplicate task name 't'"):
        lf.load(lf.LinearFlow("f", task, lf.LinearFlow("inner", task)))


def test_deeply_nested_flows_run_in_order() -> None:
    flow: lf.Flow = lf.LinearFlow("l0", make("t0", provides="v0"))
    for depth in range(1, 6):
        flow = lf.LinearFlow(f"l{depth}", flow, make(f"t{depth}", f"v{depth}", (f"v{depth - 1}",)))
    out = lf.run(flow)
    assert out["v5"] == "t5(v4=t4(v3=t3(v2=t2(v1=t1(v0=t0())))))"
