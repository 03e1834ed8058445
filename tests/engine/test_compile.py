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
