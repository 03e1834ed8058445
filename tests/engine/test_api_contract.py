"""Black-box acceptance tests written from API.md (Tasks, Flows, Running, States, Errors).

Only ``import ledgerflow as lf`` and the names API.md documents are used, so a
failure here means the code and the public contract disagree.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import ledgerflow as lf

CALLS: list[str] = []


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    CALLS.clear()


class Boom(Exception):
    """The failure the tests inject."""


def make_pair() -> lf.Flow:
    """A factory importable as ``tests.engine.test_api_contract:make_pair``."""

    @lf.task(provides="x")
    def first() -> int:
        CALLS.append("first")
        return 1

    @lf.task(provides="y")
    def second(x: int, k: int) -> int:
        CALLS.append("second")
        return x + k

    return lf.LinearFlow("pair", first, second)


def stored_flow(backend: lf.Backend, flow_uuid: str) -> lf.FlowDetail:
    with backend.connect() as conn:
        return conn.get_flow_details(flow_uuid)


# ---- Tasks -------------------------------------------------------------------------
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


# ---- Retry -------------------------------------------------------------------------
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


# ---- Flows -------------------------------------------------------------------------
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


# ---- Running -----------------------------------------------------------------------
def test_load_returns_engine_with_storage_book_and_flow_detail() -> None:
    engine = lf.load(make_pair(), store={"k": 2})
    assert isinstance(engine.storage, lf.Storage)
    assert isinstance(engine.book, lf.LogBook) and engine.book.name == "pair"
    assert isinstance(engine.flow_detail, lf.FlowDetail)
    assert engine.book.find(engine.flow_detail.uuid) is engine.flow_detail
    assert engine.flow_detail.state == lf.states.PENDING
    assert engine.run() == {"x": 1, "y": 3}
    assert engine.flow_detail.state == lf.states.SUCCESS
    assert {td.name: td.state for td in engine.flow_detail} == {
        "first": "SUCCESS",
        "second": "SUCCESS",
    }


def test_run_accepts_the_same_keywords_as_load(tmp_path: Any) -> None:
    out = lf.run(
        make_pair,
        store={"k": 1},
        backend=f"sqlite:///{tmp_path}/r.db",
        book="my book",
        engine="parallel",
        executor=None,
        max_workers=2,
        save="batched",
    )
    assert out == {"x": 1, "y": 2}
    backend = lf.open_backend(f"sqlite:///{tmp_path}/r.db")
    try:
        with backend.connect() as conn:
            (book,) = conn.get_logbooks()
        assert book.name == "my book"
        (fd,) = list(book)
        assert fd.state == "SUCCESS"
    finally:
        backend.close()


@pytest.mark.parametrize("source", ["factory", "string"])
def test_factory_and_string_sources_resume_from_storage_alone(source: str, tmp_path: Any) -> None:
    uri = f"sqlite:///{tmp_path}/f.db"
    flow_or_factory: Any = (
        make_pair if source == "factory" else "tests.engine.test_api_contract:make_pair"
    )
    engine = lf.load(flow_or_factory, store={"k": 5}, backend=uri, save="final")
    engine.on_change(
        lambda e: engine.suspend() if (e.name, e.state) == ("first", "SUCCESS") else None
    )
    assert engine.run() == {"x": 1}
    meta = engine.flow_detail.meta
    assert "tests.engine.test_api_contract:make_pair" in meta.values()
    assert {"k": 5} in meta.values()
    assert "serial" in meta.values() and "final" in meta.values()
    CALLS.clear()
    assert lf.resume(uri, engine.flow_detail.uuid) == {"x": 1, "y": 6}
    assert CALLS == ["second"]


def test_book_as_logbook_is_used() -> None:
    backend = lf.open_backend("memory://")
    book = lf.LogBook("mine")
    engine = lf.load(make_pair(), store={"k": 0}, backend=backend, book=book)
    assert engine.book is book or engine.book.uuid == book.uuid
    engine.run()
    with backend.connect() as conn:
        stored = conn.get_logbook(book.uuid)
    assert [fd.uuid for fd in stored] == [engine.flow_detail.uuid]


def test_backend_passed_in_is_never_closed_and_schema_is_created(tmp_path: Any) -> None:
    backend = lf.open_backend(f"sqlite:///{tmp_path}/empty.db")  # no upgrade() called
    try:
        engine = lf.load(make_pair(), store={"k": 1}, backend=backend)
        engine.run()
        lf.run(make_pair(), store={"k": 1}, backend=backend)
        with backend.connect() as conn:
            assert len(conn.get_logbooks()) == 2
            assert conn.get_flow_details(engine.flow_detail.uuid).state == "SUCCESS"
    finally:
        backend.close()


def test_resume_creates_schema_on_an_empty_store(tmp_path: Any) -> None:
    with pytest.raises(lf.NotFound):
        lf.resume(f"sqlite:///{tmp_path}/none.db", "no-such-flow")


def test_on_change_events_for_every_flow_and_task_change() -> None:
    engine = lf.load(make_pair(), store={"k": 1})
    events: list[Any] = []
    engine.on_change(events.append)
    engine.run()
    seen = [(e.kind, e.name, e.state) for e in events]
    assert seen == [
        ("flow", "pair", "RUNNING"),
        ("task", "first", "RUNNING"),
        ("task", "first", "SUCCESS"),
        ("task", "second", "RUNNING"),
        ("task", "second", "SUCCESS"),
        ("flow", "pair", "SUCCESS"),
    ]
    uuids = {td.name: td.uuid for td in engine.flow_detail}
    for e in events:
        assert e.flow_uuid == engine.flow_detail.uuid
        assert e.task_uuid == (None if e.kind == "flow" else uuids[e.name])


def test_raising_callback_is_logged_and_never_breaks_the_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = lf.load(make_pair(), store={"k": 1})

    def bad(event: Any) -> None:
        raise RuntimeError("listener bug")

    engine.on_change(bad)
    later: list[Any] = []
    engine.on_change(later.append)
    with caplog.at_level(logging.ERROR):
        assert engine.run() == {"x": 1, "y": 2}
    assert any("listener bug" in (r.exc_text or "") or r.exc_info for r in caplog.records)
    assert len(later) == 6


def test_suspend_from_another_thread(tmp_path: Any) -> None:
    started = threading.Event()
    release = threading.Event()

    @lf.task(provides="a")
    def wait_here() -> int:
        started.set()
        assert release.wait(10)
        return 1

    @lf.task(provides="b")
    def after(a: int) -> int:
        return a + 1

    def flow() -> lf.Flow:
        return lf.LinearFlow("susp", wait_here, after)

    backend = lf.open_backend(f"sqlite:///{tmp_path}/s.db")
    try:
        engine = lf.load(flow(), backend=backend)
        out: dict[str, Any] = {}
        runner = threading.Thread(target=lambda: out.update(engine.run()))
        runner.start()
        assert started.wait(10)
        engine.suspend()
        release.set()
        runner.join(10)
        assert out == {"a": 1}
        assert engine.flow_detail.state == lf.states.SUSPENDED
        assert stored_flow(backend, engine.flow_detail.uuid).state == "SUSPENDED"
        again = lf.open_backend(f"sqlite:///{tmp_path}/s.db")
        try:
            assert lf.resume(again, engine.flow_detail.uuid, flow=flow()) == {"a": 1, "b": 2}
        finally:
            again.close()
    finally:
        backend.close()


def test_suspend_from_a_callback_with_parallel_engine() -> None:
    backend = lf.open_backend("memory://")
    engine = lf.load(make_pair(), store={"k": 3}, backend=backend, engine="parallel")
    engine.on_change(
        lambda e: engine.suspend() if (e.name, e.state) == ("first", "SUCCESS") else None
    )
    assert engine.run() == {"x": 1}
    assert stored_flow(backend, engine.flow_detail.uuid).state == "SUSPENDED"
    assert lf.resume(backend, engine.flow_detail.uuid, flow=make_pair()) == {"x": 1, "y": 4}


def test_parallel_engine_runs_ready_tasks_concurrently_up_to_max_workers() -> None:
    barrier = threading.Barrier(2, timeout=10)
    lock = threading.Lock()
    running = [0, 0]  # now, peak

    class Meet(lf.Task):
        def execute(self) -> str:
            with lock:
                running[0] += 1
                running[1] = max(running[1], running[0])
            try:
                barrier.wait()
                time.sleep(0.02)
            finally:
                with lock:
                    running[0] -= 1
            return self.name

    flow = lf.UnorderedFlow("u", *(Meet(name=f"t{i}", provides=f"t{i}") for i in range(6)))
    out = lf.run(flow, engine="parallel", max_workers=2)
    assert out == {f"t{i}": f"t{i}" for i in range(6)}
    assert running[1] == 2


def test_parallel_engine_with_a_thread_pool_passed_in() -> None:
    threads: list[str] = []
    contexts: list[Any] = []

    class Where(lf.Task):
        def execute(self) -> None:
            threads.append(threading.current_thread().name)
            contexts.append(lf.current_task().last_checkpoint)

    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="mine") as pool:
        flow = lf.UnorderedFlow("u", *(Where(name=f"w{i}") for i in range(4)))
        lf.run(flow, engine="parallel", executor=pool)
        assert len(threads) == 4 and all(t.startswith("mine") for t in threads)
        assert contexts == [None] * 4
        assert pool.submit(lambda: 7).result() == 7  # still usable: not shut down


def test_bad_engine_and_save_values_are_value_errors() -> None:
    with pytest.raises(ValueError, match="turbo"):
        lf.load(make_pair(), store={"k": 1}, engine="turbo")
    with pytest.raises(ValueError, match="sometimes"):
        lf.load(make_pair(), store={"k": 1}, save="sometimes")


# ---- Failure and revert --------------------------------------------------------------
class Rec(lf.Task):
    """Records execute/revert; fails if its name is in FAIL, revert raises if in BAD_REVERT."""

    FAIL: set[str] = set()
    BAD_REVERT: set[str] = set()

    def execute(self, **inputs: Any) -> str:
        CALLS.append(f"run {self.name}")
        if self.name in Rec.FAIL:
            raise Boom(f"{self.name} broke")
        return self.name

    def revert(self, *, result: Any, flow_failures: Any, **inputs: Any) -> None:
        CALLS.append(f"revert {self.name}")
        if self.name in Rec.BAD_REVERT:
            raise RuntimeError(f"cannot undo {self.name}")


@pytest.fixture(autouse=True)
def _reset_rec() -> None:
    Rec.FAIL = set()
    Rec.BAD_REVERT = set()


def four() -> lf.Flow:
    """a -> b -> c -> d, each providing its own name."""
    return lf.LinearFlow("four", *(Rec(name=n, provides=n) for n in "abcd"))


def test_failure_reverts_newest_first_and_leaves_unrun_tasks_pending() -> None:
    Rec.FAIL = {"c"}
    backend = lf.open_backend("memory://")
    engine = lf.load(four(), backend=backend)
    with pytest.raises(lf.FlowFailed) as info:
        engine.run()
    assert CALLS == ["run a", "run b", "run c", "revert c", "revert b", "revert a"]
    assert set(info.value.failures) == {"c"}
    assert isinstance(info.value.failures["c"], lf.Failure)
    assert isinstance(info.value.__cause__, Boom)
    fd = stored_flow(backend, engine.flow_detail.uuid)
    assert fd.state == lf.states.REVERTED
    by = {td.name: td for td in fd}
    assert [by[n].state for n in "abcd"] == ["REVERTED", "REVERTED", "REVERTED", "PENDING"]
    assert by["a"].result == "a" and by["b"].result == "b"  # results kept
    assert by["c"].failure is not None and by["c"].failure.matches(Boom)
    assert by["d"].attempts == 0


def test_revert_failure_makes_flow_failure_and_is_recorded() -> None:
    Rec.FAIL = {"c"}
    Rec.BAD_REVERT = {"b"}
    backend = lf.open_backend("memory://")
    engine = lf.load(four(), backend=backend)
    with pytest.raises(lf.FlowFailed):
        engine.run()
    assert CALLS[-3:] == ["revert c", "revert b", "revert a"]  # keeps reverting the rest
    fd = stored_flow(backend, engine.flow_detail.uuid)
    assert fd.state == lf.states.FAILURE
    by = {td.name: td for td in fd}
    assert by["b"].state == lf.states.REVERT_FAILURE
    assert by["b"].revert_failure is not None and "cannot undo b" in by["b"].revert_failure.message
    assert by["b"].result == "b"
    assert by["a"].state == by["c"].state == lf.states.REVERTED


def test_parallel_failure_reverts_what_ran() -> None:
    Rec.FAIL = {"b"}
    flow = lf.GraphFlow("g", Rec(name="a", provides="a"), Rec(name="b", requires=["a"]))
    with pytest.raises(lf.FlowFailed) as info:
        lf.run(flow, engine="parallel")
    assert CALLS == ["run a", "run b", "revert b", "revert a"]
    assert info.value.failures["b"].matches(Boom)


def test_unserializable_result_fails_the_task_with_serialization_error() -> None:
    @lf.task(provides="bad")
    def weird() -> object:
        return object()

    backend = lf.open_backend("memory://")
    engine = lf.load(lf.LinearFlow("f", weird), backend=backend)
    events: list[Any] = []
    engine.on_change(events.append)
    with pytest.raises(lf.FlowFailed) as info:
        engine.run()
    assert info.value.failures["weird"].matches(lf.SerializationError)
    assert ("weird", "SUCCESS") not in [(e.name, e.state) for e in events]
    (td,) = list(stored_flow(backend, engine.flow_detail.uuid))
    assert td.failure is not None and td.failure.matches(lf.SerializationError)


def test_unserializable_checkpoint_raises_serialization_error() -> None:
    @lf.task
    def cp() -> None:
        lf.current_task().checkpoint({1, 2})

    with pytest.raises(lf.FlowFailed) as info:
        lf.run(lf.LinearFlow("f", cp))
    assert info.value.failures["cp"].matches(lf.SerializationError)


# ---- Checkpoints ---------------------------------------------------------------------
def test_current_task_outside_a_task_is_lookup_error() -> None:
    with pytest.raises(LookupError):
        lf.current_task()


@pytest.mark.parametrize("save", ["always", "batched", "final"])
def test_checkpoint_is_written_through_and_seen_by_the_retry(save: str, tmp_path: Any) -> None:
    uri = f"sqlite:///{tmp_path}/cp.db"
    backend = lf.open_backend(uri)
    seen: list[Any] = []
    stored: list[Any] = []

    @lf.task(provides="done", retry=lf.Retry(attempts=2, backoff=0))
    def long() -> str:
        ctx = lf.current_task()
        seen.append(ctx.last_checkpoint)
        if ctx.last_checkpoint is None:
            ctx.checkpoint({"step": 1})
            other = lf.open_backend(uri)
            try:
                with other.connect() as conn:
                    (fd,) = conn.get_flows_for_book(engine.book.uuid)
                    stored.extend(td.checkpoint for td in fd)
            finally:
                other.close()
            raise Boom("crash after checkpoint")
        return "ok"

    try:
        engine = lf.load(lf.LinearFlow("f", long), backend=backend, save=save)
        assert engine.run() == {"done": "ok"}
        assert seen == [None, {"step": 1}]
        assert stored == [{"step": 1}]
        (td,) = list(stored_flow(backend, engine.flow_detail.uuid))
        assert td.checkpoint == {"step": 1} and td.attempts == 2
    finally:
        backend.close()


# ---- States and errors -----------------------------------------------------------------
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


# ---- Resume ----------------------------------------------------------------------------
class Crash(BaseException):
    """Stands in for the process dying: no engine catches it."""


CRASH_IN: set[str] = set()


class Step(lf.Task):
    """Appends its name to the upstream value; crashes (BaseException) when told to."""

    def execute(self, prev: str = "") -> str:
        CALLS.append(f"run {self.name}")
        if f"run {self.name}" in CRASH_IN:
            raise Crash(self.name)
        if self.name in Rec.FAIL:
            raise Boom(self.name)
        return prev + self.name

    def revert(self, *, result: Any, flow_failures: Any, **inputs: Any) -> None:
        CALLS.append(f"revert {self.name}")
        if f"revert {self.name}" in CRASH_IN:
            raise Crash(self.name)


@pytest.fixture(autouse=True)
def _reset_crash() -> None:
    CRASH_IN.clear()


def chain(version: str = "1.0") -> lf.Flow:
    """a -> b -> c, each adding its name to the previous result."""
    return lf.LinearFlow(
        "chain",
        Step(name="a", provides="a", version=version),
        Step(name="b", provides="b", rebind={"prev": "a"}, version=version),
        Step(name="c", provides="c", rebind={"prev": "b"}, version=version),
    )


def crashed_run(uri: str, where: str, save: str = "always") -> str:
    """Run chain() until ``where`` crashes it; return the flow uuid."""
    CRASH_IN.add(where)
    backend = lf.open_backend(uri)
    try:
        engine = lf.load(chain(), backend=backend, save=save)
        with pytest.raises(Crash):
            engine.run()
        return engine.flow_detail.uuid
    finally:
        CRASH_IN.clear()
        CALLS.clear()
        backend.close()


def test_resume_success_runs_nothing_and_returns_results(tmp_path: Any) -> None:
    uri = f"sqlite:///{tmp_path}/r.db"
    engine = lf.load(chain(), backend=uri)
    assert engine.run() == {"a": "a", "b": "ab", "c": "abc"}
    CALLS.clear()
    assert lf.resume(uri, engine.flow_detail.uuid, flow=chain()) == {
        "a": "a",
        "b": "ab",
        "c": "abc",
    }
    assert CALLS == []


def test_resume_a_task_found_running_runs_again_and_success_is_not_rerun(
    tmp_path: Any,
) -> None:
    uri = f"sqlite:///{tmp_path}/r.db"
    flow_uuid = crashed_run(uri, "run b")
    backend = lf.open_backend(uri)
    try:
        fd = stored_flow(backend, flow_uuid)
        assert [td.state for td in fd] == ["SUCCESS", "RUNNING", "PENDING"]
        assert lf.resume(backend, flow_uuid, flow=chain()) == {"a": "a", "b": "ab", "c": "abc"}
        assert CALLS == ["run b", "run c"]
        by = {td.name: td for td in stored_flow(backend, flow_uuid)}
        assert by["b"].attempts == 2 and by["a"].attempts == 1
        assert stored_flow(backend, flow_uuid).state == "SUCCESS"
    finally:
        backend.close()


def test_resume_reverted_flow_runs_again_from_the_start(tmp_path: Any) -> None:
    uri = f"sqlite:///{tmp_path}/r.db"
    Rec.FAIL = {"c"}
    engine = lf.load(chain(), backend=uri)
    with pytest.raises(lf.FlowFailed):
        engine.run()
    Rec.FAIL = set()
    CALLS.clear()
    assert lf.resume(uri, engine.flow_detail.uuid, flow=chain()) == {
        "a": "a",
        "b": "ab",
        "c": "abc",
    }
    assert CALLS == ["run a", "run b", "run c"]
    backend = lf.open_backend(uri)
    try:
        fd = stored_flow(backend, engine.flow_detail.uuid)
        assert fd.state == "SUCCESS"
        assert [td.attempts for td in fd] == [2, 2, 2]
    finally:
        backend.close()


def test_resume_reverting_flow_continues_its_revert_only(tmp_path: Any) -> None:
    uri = f"sqlite:///{tmp_path}/r.db"
    Rec.FAIL = {"c"}
    flow_uuid = crashed_run(uri, "revert b")
    backend = lf.open_backend(uri)
    try:
        fd = stored_flow(backend, flow_uuid)
        assert fd.state == "REVERTING"
        assert [td.state for td in fd] == ["SUCCESS", "REVERTING", "REVERTED"]
        Rec.FAIL = set()  # even though c would now succeed, nothing runs forward
        with pytest.raises(lf.FlowFailed) as info:
            lf.resume(backend, flow_uuid, flow=chain())
        assert CALLS == ["revert b", "revert a"]
        assert set(info.value.failures) == {"c"}
        fd = stored_flow(backend, flow_uuid)
        assert fd.state == "REVERTED"
        assert [td.state for td in fd] == ["REVERTED"] * 3
    finally:
        backend.close()


def test_resume_with_major_version_change_is_refused_before_anything_runs(
    tmp_path: Any,
) -> None:
    uri = f"sqlite:///{tmp_path}/r.db"
    flow_uuid = crashed_run(uri, "run b")
    backend = lf.open_backend(uri)
    try:
        before = stored_flow(backend, flow_uuid).to_dict()
        with pytest.raises(lf.VersionMismatchError):
            lf.resume(backend, flow_uuid, flow=chain(version="2.0"))
        assert CALLS == []
        assert stored_flow(backend, flow_uuid).to_dict() == before
        assert lf.resume(backend, flow_uuid, flow=chain(version="1.4"))["c"] == "abc"
    finally:
        backend.close()


def test_resume_store_overrides_and_new_store_values(tmp_path: Any) -> None:
    uri = f"sqlite:///{tmp_path}/r.db"
    engine = lf.load(make_pair, store={"k": 1}, backend=uri)
    engine.on_change(
        lambda e: engine.suspend() if (e.name, e.state) == ("first", "SUCCESS") else None
    )
    engine.run()
    assert lf.resume(uri, engine.flow_detail.uuid, store={"k": 10}) == {"x": 1, "y": 11}


def test_resume_passes_on_change_callback_before_anything_runs(tmp_path: Any) -> None:
    uri = f"sqlite:///{tmp_path}/r.db"
    flow_uuid = crashed_run(uri, "run b")
    events: list[Any] = []
    out = lf.resume(uri, flow_uuid, flow=chain(), on_change=events.append)
    assert out["c"] == "abc"
    seen = [(e.kind, e.name, e.state) for e in events]
    assert seen[0] == ("flow", "chain", "RUNNING")
    assert ("task", "b", "RUNNING") in seen and seen[-1] == ("flow", "chain", "SUCCESS")
    assert all(e.flow_uuid == flow_uuid for e in events)


# ---- Save policies ---------------------------------------------------------------------
@pytest.mark.parametrize("save", ["always", "batched", "final"])
def test_save_policies_never_lose_a_committed_task(save: str, tmp_path: Any) -> None:
    uri = f"sqlite:///{tmp_path}/p.db"
    flow_uuid = crashed_run(uri, "run c", save=save)
    backend = lf.open_backend(uri)
    try:
        fd = stored_flow(backend, flow_uuid)
        states_now = [td.state for td in fd]
        if save == "always":
            assert states_now == ["SUCCESS", "SUCCESS", "RUNNING"]
        if save == "final":
            assert states_now == ["PENDING", "PENDING", "PENDING"]
        assert lf.resume(backend, flow_uuid, flow=chain()) == {"a": "a", "b": "ab", "c": "abc"}
        assert stored_flow(backend, flow_uuid).state == "SUCCESS"
    finally:
        backend.close()


def test_final_policy_writes_at_the_end_and_on_failure(tmp_path: Any) -> None:
    uri = f"sqlite:///{tmp_path}/p.db"
    Rec.FAIL = {"b"}
    backend = lf.open_backend(uri)
    try:
        engine = lf.load(chain(), backend=backend, save="final")
        with pytest.raises(lf.FlowFailed):
            engine.run()
        fd = stored_flow(backend, engine.flow_detail.uuid)
        assert fd.state == "REVERTED"
        assert [td.state for td in fd] == ["REVERTED", "REVERTED", "PENDING"]
    finally:
        backend.close()


def test_always_policy_commits_a_result_before_the_next_task_starts(tmp_path: Any) -> None:
    uri = f"sqlite:///{tmp_path}/p.db"
    seen: list[str] = []

    @lf.task(provides="one")
    def one() -> int:
        return 1

    @lf.task
    def look(one: int) -> None:
        other = lf.open_backend(uri)
        try:
            with other.connect() as conn:
                (fd,) = conn.get_flows_for_book(engine.book.uuid)
                seen.extend(f"{td.name}={td.state}:{td.result}" for td in fd)
        finally:
            other.close()

    engine = lf.load(lf.LinearFlow("f", one, look), backend=uri)
    engine.run()
    assert seen == ["one=SUCCESS:1", "look=RUNNING:None"]


def test_illegal_transition_raises_state_transition_error() -> None:
    engine = lf.load(make_pair(), store={"k": 1})
    engine.run()
    with pytest.raises(lf.StateTransitionError):
        engine.storage.set_flow_state(lf.states.RUNNING)


# ---- More corners ------------------------------------------------------------------------
def test_current_task_inside_revert_and_execute() -> None:
    names: list[str] = []

    class Named(lf.Task):
        def execute(self) -> None:
            names.append(lf.current_task().name)
            raise Boom("x")

        def revert(self, *, result: Any, flow_failures: Any, **inputs: Any) -> None:
            ctx = lf.current_task()
            names.append(ctx.name)
            ctx.checkpoint("undone")

    engine = lf.load(lf.LinearFlow("f", Named(name="n")))
    with pytest.raises(lf.FlowFailed):
        engine.run()
    assert names == ["n", "n"]
    (td,) = list(engine.flow_detail)
    assert td.checkpoint == "undone"


def test_last_checkpoint_survives_a_crash(tmp_path: Any) -> None:
    uri = f"sqlite:///{tmp_path}/c.db"
    seen: list[Any] = []

    @lf.task(provides="r")
    def long() -> str:
        ctx = lf.current_task()
        seen.append(ctx.last_checkpoint)
        if ctx.last_checkpoint is None:
            ctx.checkpoint([1, "half"])
            raise Crash("power cut")
        return "done"

    def flow() -> lf.Flow:
        return lf.LinearFlow("f", long)

    engine = lf.load(flow(), backend=uri, save="final")
    with pytest.raises(Crash):
        engine.run()
    assert lf.resume(uri, engine.flow_detail.uuid, flow=flow()) == {"r": "done"}
    assert seen == [None, [1, "half"]]


def test_resume_of_a_flow_never_run_runs_everything(tmp_path: Any) -> None:
    uri = f"sqlite:///{tmp_path}/n.db"
    engine = lf.load(chain(), backend=uri)
    assert lf.resume(uri, engine.flow_detail.uuid, flow=chain())["c"] == "abc"
    assert CALLS == ["run a", "run b", "run c"]


def test_two_runs_into_one_logbook() -> None:
    backend = lf.open_backend("memory://")
    book = lf.LogBook("shared")
    one = lf.load(chain(), backend=backend, book=book)
    one.run()
    two = lf.load(make_pair(), store={"k": 1}, backend=backend, book=book)
    two.run()
    with backend.connect() as conn:
        stored = conn.get_logbook(book.uuid)
    assert [fd.uuid for fd in stored] == [one.flow_detail.uuid, two.flow_detail.uuid]
    assert all(fd.state == "SUCCESS" for fd in stored)


def test_empty_flow_runs_to_success() -> None:
    engine = lf.load(lf.LinearFlow("empty"))
    assert engine.run() == {}
    assert engine.flow_detail.state == "SUCCESS"


def test_parallel_failure_collects_every_failure_and_reverts_all() -> None:
    barrier = threading.Barrier(2, timeout=10)

    class Both(lf.Task):
        def execute(self) -> None:
            barrier.wait()
            raise Boom(self.name)

    flow = lf.UnorderedFlow("u", Both(name="l"), Both(name="r"))
    with pytest.raises(lf.FlowFailed) as info:
        lf.run(flow, engine="parallel", max_workers=2)
    assert set(info.value.failures) == {"l", "r"}
    assert isinstance(info.value.__cause__, Boom)


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


def test_failure_events_and_revert_events() -> None:
    Rec.FAIL = {"b"}
    engine = lf.load(lf.LinearFlow("f", Rec(name="a", provides="a"), Rec(name="b")))
    events: list[Any] = []
    engine.on_change(events.append)
    with pytest.raises(lf.FlowFailed):
        engine.run()
    seen = [(e.name, e.state) for e in events]
    assert seen == [
        ("f", "RUNNING"),
        ("a", "RUNNING"),
        ("a", "SUCCESS"),
        ("b", "RUNNING"),
        ("b", "FAILURE"),
        ("f", "REVERTING"),
        ("b", "REVERTING"),
        ("b", "REVERTED"),
        ("a", "REVERTING"),
        ("a", "REVERTED"),
        ("f", "REVERTED"),
    ]


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


@lf.task(provides="where")
def where_am_i() -> str:
    """Runs in a worker process: current_task() is unavailable there."""
    try:
        lf.current_task()
    except LookupError:
        return "no context"
    return "context"


@lf.task
def fails_in_child(where: str) -> None:
    """Fails in a worker process."""
    raise Boom(f"child {where}")


@fails_in_child.revert
def _undo_in_parent(where: str, *, result: Any, flow_failures: Any) -> None:
    CALLS.append(f"undo {where} {type(result).__name__}")


def test_process_pool_runs_importable_tasks_and_reverts() -> None:
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(2) as pool:
        assert lf.run(lf.LinearFlow("p", where_am_i), engine="parallel", executor=pool) == {
            "where": "no context"
        }
        with pytest.raises(lf.FlowFailed) as info:
            lf.run(
                lf.LinearFlow("p", Rec(name="r"), where_am_i, fails_in_child),
                engine="parallel",
                executor=pool,
            )
    assert info.value.failures["fails_in_child"].matches(Boom)
    assert "undo no context Failure" in CALLS
    assert CALLS[-1] == "revert r"


def test_serial_engine_with_an_executor_runs_one_task_at_a_time() -> None:
    running = [0, 0]
    lock = threading.Lock()

    class One(lf.Task):
        def execute(self) -> None:
            with lock:
                running[0] += 1
                running[1] = max(running)
            time.sleep(0.01)
            with lock:
                running[0] -= 1

    with ThreadPoolExecutor(4) as pool:
        lf.run(lf.UnorderedFlow("u", *(One(name=f"o{i}") for i in range(4))), executor=pool)
    assert running[1] == 1


def test_suspend_before_any_task_leaves_everything_pending() -> None:
    backend = lf.open_backend("memory://")
    engine = lf.load(chain(), backend=backend)
    engine.on_change(lambda e: engine.suspend() if e.kind == "flow" else None)
    assert engine.run() == {}
    fd = stored_flow(backend, engine.flow_detail.uuid)
    assert fd.state == "SUSPENDED" and [td.state for td in fd] == ["PENDING"] * 3
    assert CALLS == []
    assert lf.resume(backend, engine.flow_detail.uuid, flow=chain())["c"] == "abc"


def test_last_checkpoint_is_none_when_a_task_runs_again_after_a_revert(tmp_path: Any) -> None:
    uri = f"sqlite:///{tmp_path}/c.db"
    seen: list[Any] = []

    @lf.task(provides="r")
    def long() -> str:
        ctx = lf.current_task()
        seen.append(ctx.last_checkpoint)
        ctx.checkpoint("half")
        return "done"

    @long.revert
    def _undo(*, result: Any, flow_failures: Any) -> None:
        seen.append(("revert sees", lf.current_task().last_checkpoint))

    def flow() -> lf.Flow:
        return lf.LinearFlow("f", long, Rec(name="later"))

    Rec.FAIL = {"later"}
    engine = lf.load(flow(), backend=uri)
    with pytest.raises(lf.FlowFailed):
        engine.run()
    Rec.FAIL = set()
    assert lf.resume(uri, engine.flow_detail.uuid, flow=flow())["r"] == "done"
    # The revert undid the work "half" described: the rerun starts from nothing.
    assert seen == [None, ("revert sees", "half"), None]


def test_flow_retry_reruns_a_task_without_its_stale_checkpoint() -> None:
    seen: list[Any] = []

    @lf.task
    def long() -> None:
        ctx = lf.current_task()
        seen.append(ctx.last_checkpoint)
        ctx.checkpoint(len(seen))
        if len(seen) == 1:
            raise Boom("first run")

    lf.run(lf.LinearFlow("f", long, retry=lf.Retry(attempts=2, backoff=0)))
    assert seen == [None, None]


def test_resume_keeps_the_engine_kind_and_save_policy_of_the_run(tmp_path: Any) -> None:
    uri = f"sqlite:///{tmp_path}/k.db"
    observed: list[Any] = []

    @lf.task(provides="a")
    def first() -> int:
        return 1

    @lf.task(provides="b")
    def second(a: int) -> int:
        return a + 1

    @lf.task(provides="c")
    def third(b: int) -> int:
        observed.append(threading.current_thread() is threading.main_thread())
        return b + 1

    def flow() -> lf.Flow:
        return lf.LinearFlow("k", first, second, third)

    engine = lf.load(flow(), backend=uri, engine="parallel", save="final")
    engine.on_change(
        lambda e: engine.suspend() if (e.name, e.state) == ("first", "SUCCESS") else None
    )
    engine.run()
    flow_uuid = engine.flow_detail.uuid
    seen_states: list[list[str]] = []

    def watch(event: Any) -> None:
        if (event.name, event.state) == ("third", "RUNNING"):
            other = lf.open_backend(uri)
            try:
                with other.connect() as conn:
                    seen_states.append([td.state for td in conn.get_flow_details(flow_uuid)])
            finally:
                other.close()

    assert lf.resume(uri, flow_uuid, flow=flow(), on_change=watch) == {"a": 1, "b": 2, "c": 3}
    assert observed == [False]  # parallel: a worker thread ran the task
    assert seen_states == [["SUCCESS", "PENDING", "PENDING"]]  # "final": nothing written yet


def test_max_workers_limits_a_larger_executor_passed_in() -> None:
    running = [0, 0]
    lock = threading.Lock()

    class One(lf.Task):
        def execute(self) -> None:
            with lock:
                running[0] += 1
                running[1] = max(running)
            time.sleep(0.01)
            with lock:
                running[0] -= 1

    flow = lf.UnorderedFlow("u", *(One(name=f"o{i}") for i in range(4)))
    with ThreadPoolExecutor(4) as pool:
        lf.run(flow, engine="parallel", executor=pool, max_workers=1)
    assert running[1] == 1


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
