"""JSON encoding of user values: what is refused, and the message that says why."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import pytest

import ledgerflow as lf
from ledgerflow import serialization


@pytest.mark.parametrize(
    ("value", "key", "where"),
    [
        ({1: "a"}, "1 (int)", "the top"),
        ({"a": [0, {2.5: "x"}]}, "2.5 (float)", "['a'][1]"),
        ({"a": ({"ok": 1}, {None: 1})}, "None (NoneType)", "['a'][1]"),
        ([{"fine": {True: 0}}], "True (bool)", "[0]['fine']"),
        (OrderedDict([(3, "x")]), "3 (int)", "the top"),
    ],
)
def test_non_string_dict_keys_are_refused_with_their_path(value: Any, key: str, where: str) -> None:
    with pytest.raises(lf.SerializationError) as info:
        serialization.dumps(value, "result of task 't'")
    message = str(info.value)
    assert message.startswith("result of task 't' has a dict key")
    assert key in message and f"at {where}:" in message


@pytest.mark.parametrize(
    "value",
    [{"a": {"b": [1, (2, 3)]}}, ["{not a dict}", 1], "{", {"": None}, OrderedDict(a=1)],
)
def test_string_keyed_values_round_trip(value: Any) -> None:
    text = serialization.dumps(value, "v")
    back = serialization.loads(text, "v")
    assert serialization.dumps(back, "v") == text


def test_tuples_come_back_as_lists() -> None:
    assert serialization.loads(serialization.dumps({"t": (1, 2)}, "v"), "v") == {"t": [1, 2]}


def test_a_result_with_int_keys_fails_its_task_before_success() -> None:
    @lf.task(provides="counts")
    def count() -> dict[int, int]:
        return {1: 10, 2: 20}

    engine = lf.load(lf.LinearFlow("f", count), backend="memory://")
    with pytest.raises(lf.FlowFailed) as info:
        engine.run()
    failure = info.value.failures["count"]
    assert failure.matches(lf.SerializationError) and "dict key 1 (int)" in failure.message
    assert engine.storage.task_state("count") == "REVERTED"


def test_a_store_with_int_keys_is_refused_at_load() -> None:
    @lf.task
    def noop() -> None:
        return None

    with pytest.raises(lf.SerializationError, match="dict key 7"):
        lf.load(lf.LinearFlow("f", noop), store={"table": {7: "x"}})
