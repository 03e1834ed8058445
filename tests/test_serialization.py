"""Typed values in tagged JSON: what round-trips, what is refused, and how old values read."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import subprocess
import sys
import uuid
import zoneinfo
from collections import OrderedDict, namedtuple
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import ledgerflow as lf
from ledgerflow import serialization


class Color(enum.Enum):
    RED = 1
    GREEN = "g"


class Level(enum.IntEnum):
    LOW = 1


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    label: str = "p"
    when: datetime | None = None
    tags: frozenset[str] = frozenset()


@dataclasses.dataclass
class Counter:
    start: int
    total: int = dataclasses.field(init=False, default=0)


Pair = namedtuple("Pair", "left right")


class Money:
    """A class of the user's own, stored through lf.register_type."""

    def __init__(self, cents: int, currency: str) -> None:
        self.cents, self.currency = cents, currency

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Money) and (self.cents, self.currency) == (
            other.cents,
            other.currency,
        )

    def __hash__(self) -> int:
        return hash((self.cents, self.currency))


class Unregistered:
    """Nobody registered this class: its instances cannot be stored."""


lf.register_type(
    Money, lambda m: {"cents": m.cents, "cur": m.currency}, lambda d: Money(d["cents"], d["cur"])
)


def round_trip(value: Any) -> Any:
    return serialization.loads(serialization.dumps(value, "v"), "v")


TYPED = [
    (1, 2),
    ((1, (2, [3, (4,)])),),
    {1, 2, 3},
    frozenset({"a", "b"}),
    b"\x00\xffbytes",
    bytearray(b"ba"),
    datetime(2026, 1, 2, 3, 4, 5, 6),
    datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    datetime(2026, 7, 1, 12, tzinfo=timezone(timedelta(hours=-3, minutes=-30))),
    datetime(2026, 7, 1, 12, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")),
    date(2026, 2, 28),
    time(23, 59, 59, 999999),
    time(1, 2, tzinfo=UTC),
    timedelta(days=-3, seconds=7, microseconds=9),
    Decimal("3.1400"),
    Decimal("-Infinity"),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    Color.RED,
    Color.GREEN,
    Level.LOW,
    Point(3, when=datetime(2026, 1, 1, tzinfo=UTC), tags=frozenset({"x"})),
    Pair(1, (2, 3)),
    Money(1999, "EUR"),
    float("inf"),
    {1: "int", 2.5: "float", None: "none", False: "bool", (1, 2): "tuple", "s": "str"},
    {"$lf": "a user key that looks like the tag", "v": 1},
    {"nested": [{Color.RED: {date(2026, 1, 1): {1, 2}}}]},
]


@pytest.mark.parametrize(
    "value", TYPED, ids=[f"{type(v).__name__}-{i}" for i, v in enumerate(TYPED)]
)
def test_typed_values_round_trip_with_their_types(value: Any) -> None:
    back = round_trip(value)
    assert back == value
    assert type(back) is type(value)
    if isinstance(value, dict):
        assert [type(k) for k in back] == [type(k) for k in value]
    if isinstance(value, datetime):
        assert back.tzinfo == value.tzinfo or back.utcoffset() == value.utcoffset()
    assert serialization.dumps(back, "v") == serialization.dumps(value, "v")  # stable text


def test_a_zoned_datetime_keeps_its_zone_and_nan_comes_back() -> None:
    paris = datetime(2026, 7, 1, 12, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))
    assert round_trip(paris).tzinfo == zoneinfo.ZoneInfo("Europe/Paris")
    assert math.isnan(round_trip(float("nan")))


def test_a_dataclass_with_a_field_not_in_init_comes_back_whole() -> None:
    counter = Counter(5)
    counter.total = 42
    back = round_trip(counter)
    assert isinstance(back, Counter) and back.start == 5 and back.total == 42


def test_the_stored_form_is_plain_json_with_tags() -> None:
    text = serialization.dumps({"when": date(2026, 1, 1), "ids": (1, 2)}, "v")
    assert json.loads(text) == {
        "when": {"$lf": "date", "v": "2026-01-01"},
        "ids": {"$lf": "tuple", "v": [1, 2]},
    }


@pytest.mark.parametrize(
    "value",
    [{"a": {"b": [1, [2, 3]]}}, ["{not a dict}", 1], "{", {"": None}, 2.5, "text $lf"],
)
def test_plain_json_values_are_written_as_before(value: Any) -> None:
    text = serialization.dumps(value, "v")
    assert text == json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    assert serialization.loads(text, "v") == value


def test_values_stored_before_typed_values_read_back_as_they_did() -> None:
    # What earlier versions wrote for a tuple, or for an OrderedDict: plain JSON.
    assert serialization.loads('{"t":[1,2],"o":{"a":1}}', "v") == {"t": [1, 2], "o": {"a": 1}}
    assert round_trip(OrderedDict(a=1)) == {"a": 1}


def test_a_dict_subclass_and_a_str_subclass_store_as_their_plain_values() -> None:
    class Name(str):
        pass

    assert round_trip({"n": Name("x"), "o": OrderedDict(b=2)}) == {"n": "x", "o": {"b": 2}}


@pytest.mark.parametrize(
    ("value", "where", "type_name"),
    [
        (Unregistered(), "the top", "tests.test_serialization.Unregistered"),
        ({"a": [0, {"b": Unregistered()}]}, "['a'][1]['b']", "Unregistered"),
        ([(1, {2: object()})], "[0][1][2]", "object"),
        ({Unregistered(): 1}, "[", "Unregistered"),
        (Point(1, label=Unregistered()), "['label']", "Unregistered"),  # type: ignore[arg-type]
    ],
)
def test_an_unknown_type_is_refused_naming_the_path_and_the_type(
    value: Any, where: str, type_name: str
) -> None:
    with pytest.raises(lf.SerializationError) as info:
        serialization.dumps(value, "result of task 't'")
    message = str(info.value)
    assert message.startswith("result of task 't' cannot be stored")
    assert where in message and type_name in message and "lf.register_type" in message


def test_a_value_that_contains_itself_is_refused() -> None:
    loop: list[Any] = []
    loop.append((loop,))
    with pytest.raises(lf.SerializationError, match="contains itself"):
        serialization.dumps(loop, "v")


def test_decoding_imports_nothing_and_keeps_unknown_classes_as_marked_values() -> None:
    stored = (
        '[{"$lf":"enum","type":"lf_nowhere.colors:Shade","name":"DARK","v":3},'
        '{"$lf":"dataclass","type":"lf_nowhere:Box","v":{"size":{"$lf":"tuple","v":[1,2]}}},'
        '{"$lf":"type","type":"lf_nowhere:Thing","v":"x"},'
        '{"$lf":"from-the-future","v":1}]'
    )
    shade, box, thing, future = serialization.loads(stored, "v")
    assert "lf_nowhere" not in sys.modules and "lf_nowhere.colors" not in sys.modules
    assert isinstance(shade, lf.UnresolvedValue)
    assert (shade.kind, shade.type_name, shade.value) == ("enum", "lf_nowhere.colors:Shade", 3)
    assert isinstance(box, lf.UnresolvedValue) and box.value == {"size": (1, 2)}
    assert isinstance(thing, lf.UnresolvedValue) and thing.value == "x"
    assert isinstance(future, lf.UnresolvedValue) and future.kind == "from-the-future"
    assert serialization.dumps([shade, box, thing, future], "v") == stored  # written back as read


def test_an_enum_whose_module_is_imported_later_resolves_then() -> None:
    stored = '{"$lf":"enum","type":"http:HTTPStatus","name":"OK","v":200}'
    code = (
        "import sys; from ledgerflow import serialization as s; "
        f"v = s.loads({stored!r}, 'v'); print(type(v).__name__, 'http' in sys.modules); "
        f"import http; print(type(s.loads({stored!r}, 'v')).__name__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["UnresolvedValue", "False", "HTTPStatus"]


def test_register_type_validates_and_refuses_a_name_taken_by_another_class() -> None:
    with pytest.raises(TypeError):
        lf.register_type("Money", str, str)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        lf.register_type(Unregistered, "not callable", str)  # type: ignore[arg-type]

    class Other:
        pass

    name = f"{Money.__module__}:{Money.__qualname__}"
    with pytest.raises(ValueError, match="already registered"):
        lf.register_type(Other, str, str, name=name)


def test_a_registered_base_class_covers_its_subclasses() -> None:
    class Coins(Money):
        pass

    assert round_trip(Coins(5, "USD")) == Money(5, "USD")


def test_a_corrupt_tagged_value_is_a_corrupt_record() -> None:
    with pytest.raises(lf.CorruptRecordError, match="corrupt tagged value"):
        serialization.loads('{"$lf":"bytes","v":"%%%"}', "result of task 'x'")


def test_typed_results_reach_the_next_task_and_the_store_with_their_types() -> None:
    seen: dict[str, Any] = {}

    @lf.task(provides="reading")
    def measure(when: datetime) -> tuple[Decimal, set[int]]:
        return Decimal("2.50"), {when.day}

    @lf.task(provides="report")
    def report(reading: tuple[Decimal, set[int]], table: dict[int, str]) -> dict[int, Any]:
        seen["reading"] = reading
        return {1: reading, 2: table}

    backend = lf.open_backend("memory://")
    when = datetime(2026, 3, 4, tzinfo=UTC)
    engine = lf.load(
        lf.LinearFlow("f", measure, report),
        store={"when": when, "table": {7: "x"}},
        backend=backend,
    )
    assert engine.run()["report"] == {1: (Decimal("2.50"), {4}), 2: {7: "x"}}
    with backend.connect() as conn:
        stored = conn.get_flow_details(engine.flow_detail.uuid)
    assert stored.meta["store"] == {"when": when, "table": {7: "x"}}
    assert stored.tasks[0].result == (Decimal("2.50"), {4})
    assert stored.tasks[1].result == {1: (Decimal("2.50"), {4}), 2: {7: "x"}}


def test_an_unencodable_result_fails_its_task_naming_task_path_and_type() -> None:
    @lf.task(provides="handle")
    def connect() -> dict[str, Any]:
        return {"conn": [Unregistered()]}

    engine = lf.load(lf.LinearFlow("f", connect), backend="memory://")
    with pytest.raises(lf.FlowFailed) as info:
        engine.run()
    failure = info.value.failures["connect"]
    assert failure.matches(lf.SerializationError)
    assert "task 'connect'" in failure.message and "['conn'][0]" in failure.message
    assert "Unregistered" in failure.message
    assert engine.storage.task_state("connect") == "REVERTED"


def test_an_unencodable_store_is_refused_at_load() -> None:
    @lf.task
    def noop() -> None:
        return None

    with pytest.raises(lf.SerializationError, match=r"store.*\['table'\]\[7\]"):
        lf.load(lf.LinearFlow("f", noop), store={"table": {7: Unregistered()}})


def test_to_dict_emits_the_tagged_form_and_from_dict_reads_it_back() -> None:
    task = lf.TaskDetail("t", result={"at": date(2026, 1, 1)}, meta={"ids": (1, 2)})
    data = task.to_dict()
    assert data["result"] == {"at": {"$lf": "date", "v": "2026-01-01"}}
    json.dumps(data)  # JSON-safe
    assert lf.TaskDetail.from_dict(data) == task
    assert data["result"] == {"at": {"$lf": "date", "v": "2026-01-01"}}  # left untouched


_json_leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
_typed_leaves = (
    _json_leaves
    | st.datetimes(timezones=st.none() | st.just(UTC))
    | st.dates()
    | st.times()
    | st.timedeltas()
    | st.decimals(allow_nan=False)
    | st.uuids()
    | st.binary()
    | st.sampled_from(list(Color))
)
_keys = st.text() | st.integers() | st.dates() | st.tuples(st.integers(), st.text())
_values = st.recursive(
    _typed_leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(_keys, inner, max_size=4)
        | st.frozensets(st.integers() | st.text(), max_size=4)
    ),
    max_leaves=20,
)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@given(_values)
def test_every_typed_value_round_trips(value: Any) -> None:
    assert _same(round_trip(value), value)
