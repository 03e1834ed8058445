"""Black-box acceptance tests from API.md: Running, failure and revert, Checkpoints."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import ledgerflow as lf
from tests.engine.contract_helpers import (
    CALLS,
    Boom,
    Rec,
    chain,
    four,
    make_pair,
    stored_flow,
)


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


class _Unregistered:
    """A class no one registered with lf.register_type: its instances cannot be stored."""


def test_unserializable_checkpoint_raises_serialization_error() -> None:
    @lf.task
    def cp() -> None:
        lf.current_task().checkpoint({"socket": _Unregistered()})

    with pytest.raises(lf.FlowFailed) as info:
        lf.run(lf.LinearFlow("f", cp))
    assert info.value.failures["cp"].matches(lf.SerializationError)


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


@lf.task(provides="where")
def where_am_i() -> str:
    """Runs in a worker process: current_task() works there too."""
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
            "where": "context"
        }
        with pytest.raises(lf.FlowFailed) as info:
            lf.run(
                lf.LinearFlow("p", Rec(name="r"), where_am_i, fails_in_child),
                engine="parallel",
                executor=pool,
            )
    assert info.value.failures["fails_in_child"].matches(Boom)
    assert "undo context Failure" in CALLS
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
