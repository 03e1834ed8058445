"""Task definition: decorator forms, inferred requires, provides, rebind, Retry."""

from __future__ import annotations

from typing import Any

import pytest

import ledgerflow as lf


@lf.task
def bare(a: int, b: int = 2) -> int:
    return a + b


@lf.task(name="named", provides=("x", "y"), version="2.1", rebind={"a": "alpha"})
def with_args(a: int) -> tuple[int, int]:
    return a, a * 2


class Subclass(lf.Task):
    def execute(self, image: str, size: int = 1) -> str:
        return f"{image}:{size}"


def test_bare_decorator_keeps_function_callable_and_infers_requires() -> None:
    assert isinstance(bare, lf.Task)
    assert bare(1) == 3
    assert bare.name == "bare"
    assert bare.requires == ("a",)
    assert bare.optional_args == {"b": "b"}
    assert bare.version == "1.0"


def test_decorator_with_arguments() -> None:
    assert with_args.name == "named"
    assert with_args.version == "2.1"
    assert with_args.requires == ("alpha",)
    assert with_args.provides == ("x", "y")
    assert with_args.extract((1, 2)) == {"x": 1, "y": 2}


def test_subclass_name_defaults_to_qualname() -> None:
    t = Subclass()
    assert t.name == "Subclass"
    assert t.requires == ("image",)
    assert Subclass(name="other", rebind=["img"]).requires == ("img",)


def test_provides_forms() -> None:
    assert Subclass(provides="out").extract(5) == {"out": 5}
    assert Subclass(provides={"a": "k", "b": 1}).extract({"k": 1, 1: 2}) == {"a": 1, "b": 2}
    assert Subclass().extract(5) == {}
    with pytest.raises(ValueError, match="cannot take 'a'"):
        Subclass(provides={"a": "missing"}).extract({})


def test_rebind_unknown_parameter_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown parameters"):
        Subclass(rebind={"nope": "x"})


def test_revert_decorator_registers_and_returns_function() -> None:
    @lf.task
    def create(image: str) -> str:
        return image

    calls: list[Any] = []

    @create.revert
    def undo(image: str, *, result: Any, flow_failures: Any) -> None:
        calls.append((image, result))

    assert callable(undo)
    create.call_revert({"image": "i"}, "r", {})
    assert calls == [("i", "r")]


def test_retry_delay_and_validation() -> None:
    retry = lf.Retry(attempts=4, backoff=0.5, max_backoff=1.5)
    assert [retry.delay(n) for n in (1, 2, 3)] == [0.5, 1.0, 1.5]
    assert retry.should_retry(RuntimeError(), 3)
    assert not retry.should_retry(RuntimeError(), 4)
    assert not lf.Retry(on=(KeyError,)).should_retry(RuntimeError(), 1)
    with pytest.raises(ValueError, match="attempts"):
        lf.Retry(attempts=0)


def test_task_detail_type_names_the_code() -> None:
    assert bare.type_name == f"{__name__}.bare"
    assert Subclass().type_name == f"{__name__}.Subclass"
