"""Bad arguments are refused naming the argument, before anything is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import ledgerflow as lf


@lf.task(provides="out")
def echo(value: str) -> str:
    return value


def _books(uri: str) -> int:
    with lf.open_backend(uri) as backend, backend.connect() as conn:
        return len(conn.get_logbooks())


@pytest.mark.parametrize("store", [[("value", "x")], "value=x", 42, {1: "x"}])
def test_a_store_that_is_not_a_mapping_of_names_is_a_type_error(tmp_path: Path, store: Any) -> None:
    uri = f"sqlite:///{tmp_path / 's.db'}"
    with pytest.raises(TypeError, match="store"):
        lf.load(lf.LinearFlow("f", echo), store=store, backend=uri)
    assert not (tmp_path / "s.db").exists()


def test_resume_refuses_a_bad_store_before_writing(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'r.db'}"
    engine = lf.load(lf.LinearFlow("f", echo), store={"value": "x"}, backend=uri)
    with pytest.raises(TypeError, match="store must be a mapping"):
        lf.resume(uri, engine.flow_detail.uuid, flow=lf.LinearFlow("f", echo), store=["x"])  # type: ignore[arg-type]
    assert _books(uri) == 1
    assert lf.resume(uri, engine.flow_detail.uuid, flow=lf.LinearFlow("f", echo)) == {"out": "x"}


@pytest.mark.parametrize("name", ["", "   "])
def test_an_empty_task_name_is_a_value_error(name: str) -> None:
    with pytest.raises(ValueError, match="task name must not be empty"):
        lf.task(name)(lambda: None)
    with pytest.raises(ValueError, match="task name must not be empty"):
        lf.Task(name=name)


def test_a_task_name_that_is_not_a_string_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="task name must be a string"):
        lf.Task(name=7)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("provides", "error", "match"),
    [
        (("a", "a"), ValueError, "names the symbol 'a' twice"),
        (["x", "y", "x"], ValueError, "names the symbol 'x' twice"),
        (("a", ""), ValueError, "empty symbol"),
        ("", ValueError, "empty symbol"),
        ({1: 0}, TypeError, "with strings"),
        (("a", 2), TypeError, "with strings"),
        (5, TypeError, "a tuple or list of str, or a dict, not int"),
    ],
)
def test_provides_naming_a_symbol_twice_or_badly_is_refused(
    provides: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match) as info:
        lf.task(provides=provides)(lambda: (1, 2))
    assert "provides" in str(info.value)
