"""Models: exact to_dict/from_dict round trips, merging, Failure chains."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

import ledgerflow as lf
from ledgerflow import states

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
times = st.datetimes(timezones=st.just(UTC))
failures = st.recursive(
    st.builds(
        lf.Failure, st.lists(st.text(), min_size=1, max_size=3).map(tuple), st.text(), st.text()
    ),
    lambda inner: st.builds(
        lf.Failure,
        st.lists(st.text(), min_size=1, max_size=3).map(tuple),
        st.text(),
        st.text(),
        inner,
    ),
    max_leaves=3,
)
tasks = st.builds(
    lf.TaskDetail,
    name=st.text(min_size=1),
    uuid=st.uuids().map(str),
    version=st.sampled_from(["1.0", "2.3"]),
    state=st.sampled_from(sorted(states.TASK_STATES)),
    result=json_values,
    failure=st.none() | failures,
    revert_failure=st.none() | failures,
    meta=st.dictionaries(st.text(), json_values, max_size=3),
    checkpoint=json_values,
    attempts=st.integers(min_value=0, max_value=100),
    started_at=st.none() | times,
    finished_at=st.none() | times,
    created_at=times,
    updated_at=times,
    revision=st.integers(min_value=0, max_value=10),
)


def _book(name: str, flows: list[list[lf.TaskDetail]]) -> lf.LogBook:
    book = lf.LogBook(name, meta={"k": [1, 2]})
    for i, task_list in enumerate(flows):
        flow = lf.FlowDetail(f"f{i}", state=states.RUNNING)
        for task in task_list:
            flow.add(task)
        book.add(flow)
    return book


@given(st.text(), st.lists(st.lists(tasks, max_size=3), max_size=3))
def test_to_dict_round_trips_exactly_and_is_json_safe(
    name: str, flows: list[list[lf.TaskDetail]]
) -> None:
    book = _book(name, flows)
    data = book.to_dict()
    assert json.loads(json.dumps(data)) == data
    again = lf.LogBook.from_dict(json.loads(json.dumps(data)))
    assert again == book
    assert again.to_dict() == data


def test_to_dict_keys_are_attribute_names() -> None:
    task = lf.TaskDetail("t")
    for key in task.to_dict():
        assert hasattr(task, key)
    flow = lf.FlowDetail("f")
    assert set(flow.to_dict()) == {
        "name",
        "uuid",
        "type",
        "state",
        "meta",
        "created_at",
        "updated_at",
        "revision",
        "owner",
        "fence",
        "lease_expires_at",
        "tasks",
    }
    assert set(lf.LogBook("b").to_dict()) == {
        "name",
        "uuid",
        "meta",
        "created_at",
        "updated_at",
        "revision",
        "flows",
    }


def test_constructors_follow_the_api_signatures() -> None:
    book = lf.LogBook("b", "u1", {"m": 1})
    flow = lf.FlowDetail("f", "u2", "linear", states.RUNNING, {"x": 1})
    task = lf.TaskDetail("t", "u3", "mod.T", "2.0", states.SUCCESS)
    assert (book.uuid, book.meta) == ("u1", {"m": 1})
    assert (flow.type, flow.state, flow.meta) == ("linear", states.RUNNING, {"x": 1})
    assert (task.type, task.version, task.state, task.attempts) == (
        "mod.T",
        "2.0",
        states.SUCCESS,
        0,
    )
    assert len(lf.LogBook("x").uuid) == 36
    assert lf.LogBook("x").uuid != lf.LogBook("x").uuid


def test_containers_iterate_in_insertion_order_and_find() -> None:
    flow = lf.FlowDetail("f")
    made = [lf.TaskDetail(f"t{i}") for i in (3, 1, 2)]
    for task in made:
        flow.add(task)
    assert [t.name for t in flow] == ["t3", "t1", "t2"]
    assert flow.find(made[1].uuid) is made[1]
    assert flow.find("nope") is None
    book = lf.LogBook("b")
    book.add(flow)
    assert len(book) == 1 and book.find(flow.uuid) is flow and list(book) == [flow]


def test_merge_takes_the_newer_copy_and_keeps_extra_details() -> None:
    old = _book("b", [[lf.TaskDetail("a")]])
    new = lf.LogBook.from_dict(old.to_dict())
    new.meta = {"changed": True}
    new.revision = 7
    task = new.flows[0].tasks[0]
    task.state = states.SUCCESS
    task.result = {"r": 1}
    extra = lf.FlowDetail("extra")
    new.add(extra)
    kept = lf.FlowDetail("only-in-old")
    old.add(kept)
    assert old.merge(new) is old
    assert old.meta == {"changed": True} and old.revision == 7
    assert old.flows[0].tasks[0].state == states.SUCCESS
    assert old.flows[0].tasks[0].result == {"r": 1}
    assert [f.name for f in old] == ["f0", "only-in-old", "extra"]
    task.result["r"] = 2
    assert old.flows[0].tasks[0].result == {"r": 1}


def test_merge_refuses_another_record() -> None:
    try:
        lf.LogBook("a").merge(lf.LogBook("b"))
    except ValueError as exc:
        assert "cannot merge" in str(exc)
    else:
        raise AssertionError("merge of different uuids must fail")


def test_failure_keeps_the_chain_and_matches_by_type() -> None:
    class Custom(ValueError):
        pass

    try:
        try:
            {}["missing"]
        except KeyError:
            raise Custom("while looking up") from None
    except Custom as exc:
        suppressed = lf.Failure.from_exception(exc)
    assert suppressed.cause is None
    try:
        try:
            divmod(1, 0)
        except ZeroDivisionError as exc:
            raise Custom("bad maths") from exc
    except Custom as exc:
        failure = lf.Failure.from_exception(exc)
    assert failure.matches(Custom) and failure.matches(ValueError) and failure.matches(Exception)
    assert not failure.matches(KeyError)
    assert failure.exc_type_names[0].endswith("Custom")
    assert failure.exc_type_names[1] == "builtins.ValueError"
    assert failure.message == "bad maths"
    assert "raise Custom" in failure.traceback_str
    assert failure.cause is not None and failure.cause.matches(ZeroDivisionError)
    assert [c.message for c in failure.causes()] == ["integer division or modulo by zero"]
    assert str(failure) == "Custom: bad maths"


def test_failure_loads_without_importing_its_class() -> None:
    data: dict[str, Any] = {
        "exc_type_names": ["nowhere.to.be.Found", "builtins.Exception"],
        "message": "m",
        "traceback_str": "tb",
        "cause": None,
    }
    failure = lf.Failure.from_dict(data)
    assert failure.matches("nowhere.to.be.Found") and failure.to_dict() == data


def test_failure_of_a_self_referencing_chain_terminates() -> None:
    first = ValueError("one")
    second = KeyError("two")
    first.__context__ = second
    second.__context__ = first
    failure = lf.Failure.from_exception(first)
    assert failure.cause is not None and failure.cause.cause is None


def test_timestamps_are_aware_utc() -> None:
    before = datetime.now(UTC)
    task = lf.TaskDetail("t")
    assert task.created_at.tzinfo is not None and task.created_at >= before
    assert lf.TaskDetail.from_dict(task.to_dict()).created_at == task.created_at


def test_a_failure_built_from_a_list_round_trips_exactly() -> None:
    inner = lf.Failure(["pkg.Inner"], "inner")  # type: ignore[arg-type]
    failure = lf.Failure(["pkg.Outer", "builtins.Exception"], "outer", "tb", inner)  # type: ignore[arg-type]
    assert lf.Failure.from_dict(failure.to_dict()) == failure
    assert lf.Failure.from_dict(json.loads(json.dumps(failure.to_dict()))) == failure
    assert failure.matches("pkg.Outer") and failure.matches(Exception)
    assert hash(failure) == hash(lf.Failure.from_dict(failure.to_dict()))


def test_a_failure_of_an_exception_whose_str_breaks_is_still_captured() -> None:
    class Odd(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str")

    try:
        raise Odd()
    except Odd as exc:
        failure = lf.Failure.from_exception(exc)
    assert failure.matches(Odd) and "Odd" in failure.message
    assert lf.Failure.from_dict(failure.to_dict()) == failure
