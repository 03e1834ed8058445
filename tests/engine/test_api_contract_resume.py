"""Black-box acceptance tests from API.md: resume semantics and save policies."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import ledgerflow as lf
from tests.engine.contract_helpers import (
    CALLS,
    Boom,
    Crash,
    Rec,
    chain,
    crashed_run,
    make_pair,
    stored_flow,
)


@pytest.mark.parametrize("source", ["factory", "string"])
def test_factory_and_string_sources_resume_from_storage_alone(source: str, tmp_path: Any) -> None:
    uri = f"sqlite:///{tmp_path}/f.db"
    flow_or_factory: Any = (
        make_pair if source == "factory" else "tests.engine.contract_helpers:make_pair"
    )
    engine = lf.load(flow_or_factory, store={"k": 5}, backend=uri, save="final")
    engine.on_change(
        lambda e: engine.suspend() if (e.name, e.state) == ("first", "SUCCESS") else None
    )
    assert engine.run() == {"x": 1}
    meta = engine.flow_detail.meta
    assert "tests.engine.contract_helpers:make_pair" in meta.values()
    assert {"k": 5} in meta.values()
    assert "serial" in meta.values() and "final" in meta.values()
    CALLS.clear()
    assert lf.resume(uri, engine.flow_detail.uuid) == {"x": 1, "y": 6}
    assert CALLS == ["second"]


@pytest.mark.parametrize("scheme", ["sqlite", "file"])
def test_resume_creates_schema_on_an_empty_store(scheme: str, tmp_path: Any) -> None:
    uri = f"sqlite:///{tmp_path}/none.db" if scheme == "sqlite" else f"file://{tmp_path}/dir"
    with pytest.raises(lf.NotFound):
        lf.resume(uri, "no-such-flow")
    backend = lf.open_backend(uri)
    try:
        with backend.connect() as conn:
            conn.validate()  # the schema is there now
            assert conn.get_logbooks() == []
    finally:
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
