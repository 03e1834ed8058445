"""``async def`` tasks: serial and parallel engines, one loop, lf.arun and lf.aresume."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

import ledgerflow as lf
from ledgerflow import states

#: Generous bound for waits that only fail when something is wrong (never a pacing sleep).
STUCK = 30.0


class Fetch(lf.Task):
    """An async subclass task with an async revert."""

    undone: list[str] = []

    async def execute(self, url: str) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"url": url, "task": lf.current_task().name}

    async def revert(self, url: str, *, result: Any, flow_failures: Any) -> None:
        await asyncio.sleep(0)
        type(self).undone.append(f"{self.name}:{url}")


@lf.task(provides="size")
async def measure(page: dict[str, Any]) -> int:
    await asyncio.sleep(0)
    return len(page["url"])


measured_undone: list[int] = []


@measure.revert
async def forget(page: dict[str, Any], *, result: Any, flow_failures: Any) -> None:
    await asyncio.sleep(0)
    measured_undone.append(result)


@lf.task
def explode(size: int) -> None:
    raise RuntimeError(f"too big: {size}")


@pytest.fixture(autouse=True)
def _reset() -> None:
    Fetch.undone = []
    measured_undone.clear()


@pytest.mark.parametrize("engine", ["serial", "parallel"])
def test_async_tasks_run_and_their_results_are_stored(engine: str) -> None:
    flow = lf.LinearFlow("f", Fetch(name="fetch", provides="page"), measure)
    backend = lf.open_backend("memory://")
    run = lf.load(flow, store={"url": "https://x.test"}, backend=backend, engine=engine)
    assert run.run() == {"page": {"url": "https://x.test", "task": "fetch"}, "size": 14}
    with backend.connect() as conn:
        stored = conn.get_flow_details(run.flow_detail.uuid)
    assert [t.state for t in stored] == [states.SUCCESS, states.SUCCESS]
    assert stored.tasks[1].result == 14


@pytest.mark.parametrize("engine", ["serial", "parallel"])
def test_async_reverts_run_newest_first(engine: str) -> None:
    flow = lf.LinearFlow("f", Fetch(name="fetch", provides="page"), measure, explode)
    with pytest.raises(lf.FlowFailed, match="too big: 14"):
        lf.run(flow, store={"url": "https://x.test"}, engine=engine)
    assert measured_undone == [14] and Fetch.undone == ["fetch:https://x.test"]


def test_parallel_async_tasks_run_concurrently_on_one_loop_bounded_by_max_workers() -> None:
    running, peak, loops = [0], [0], set()
    state: dict[str, Any] = {}

    async def work(index: int) -> int:
        loops.add(id(asyncio.get_running_loop()))
        if "all" not in state:
            state["all"] = asyncio.Event()
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        if running[0] == 2:  # both slots taken: let them go
            state["all"].set()
        await asyncio.wait_for(state["all"].wait(), STUCK)
        running[0] -= 1
        return index

    tasks = []
    for i in range(6):

        async def execute(i: int = i) -> int:
            return await work(i)

        tasks.append(lf.task(name=f"t{i}", provides=f"v{i}")(execute))
    out = lf.run(lf.UnorderedFlow("u", *tasks), engine="parallel", max_workers=2)
    assert out == {f"v{i}": i for i in range(6)}
    assert peak[0] == 2  # concurrent, and never more than max_workers
    assert len(loops) == 1


def test_async_retries_and_checkpoints_work_as_for_sync_tasks() -> None:
    calls: list[Any] = []

    @lf.task(provides="done", retry=lf.Retry(attempts=3, backoff=0.001))
    async def flaky() -> str:
        ctx = lf.current_task()
        calls.append(ctx.last_checkpoint)
        await ctx.acheckpoint(len(calls))
        if len(calls) < 3:
            raise ConnectionError("again")
        return "ok"

    engine = lf.load(lf.LinearFlow("f", flaky), backend="memory://")
    assert engine.run() == {"done": "ok"}
    assert calls == [None, 1, 2]
    detail = engine.flow_detail.tasks[0]
    assert detail.checkpoint == 3 and detail.attempts == len(detail.tries) == 3


def test_a_plain_function_returning_a_coroutine_is_awaited() -> None:
    async def later() -> int:
        return 7

    @lf.task(provides="n")
    def wrapped() -> Any:
        return later()

    assert lf.run(lf.LinearFlow("f", wrapped)) == {"n": 7}


def test_arun_runs_async_tasks_on_the_callers_loop_without_blocking_it() -> None:
    gate = threading.Event()

    @lf.task(provides="loop")
    async def where() -> int:
        return id(asyncio.get_running_loop())

    @lf.task(provides="waited")
    def blocking(loop: int) -> bool:
        return gate.wait(STUCK)  # set by a coroutine: only if the loop is not blocked

    async def main() -> tuple[dict[str, Any], int]:
        async def release() -> None:
            await asyncio.sleep(0)
            gate.set()

        releaser = asyncio.create_task(release())
        out = await lf.arun(lf.LinearFlow("f", where, blocking))
        await releaser
        return out, id(asyncio.get_running_loop())

    out, loop_id = asyncio.run(main())
    assert out == {"loop": loop_id, "waited": True}


def test_aresume_continues_a_suspended_flow(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'a.db'}"
    runs: list[str] = []

    @lf.task(provides="a")
    async def first() -> str:
        runs.append("first")
        return "A"

    @lf.task(provides="b")
    async def second(a: str) -> str:
        runs.append("second")
        return a + "B"

    def flow() -> lf.Flow:
        return lf.LinearFlow("f", first, second)

    async def main() -> dict[str, Any]:
        engine = await asyncio.to_thread(lf.load, flow(), backend=uri)
        engine.on_change(
            lambda e: engine.suspend() if (e.name, e.state) == ("first", "SUCCESS") else None
        )
        assert await engine.arun() == {"a": "A"}
        return await lf.aresume(uri, engine.flow_detail.uuid, flow=flow())

    assert asyncio.run(main()) == {"a": "A", "b": "AB"}
    assert runs == ["first", "second"]


def test_a_sync_run_inside_a_running_loop_still_runs_async_tasks() -> None:
    @lf.task(provides="x")
    async def value() -> int:
        await asyncio.sleep(0)
        return 5

    async def main() -> dict[str, Any]:
        return lf.run(lf.LinearFlow("f", value))  # blocks this loop, on purpose

    assert asyncio.run(main()) == {"x": 5}


@pytest.mark.parametrize("engine", ["serial", "parallel"])
def test_an_async_try_past_its_timeout_is_cancelled_and_retried(engine: str) -> None:
    cancelled: list[int] = []

    @lf.task(provides="x", timeout=0.2, retry=lf.Retry(attempts=2, backoff=0.0))
    async def hang() -> int:
        try:
            await asyncio.Event().wait()  # never set: only the timeout ends this try
        except asyncio.CancelledError:
            cancelled.append(lf.current_task().attempt)
            raise
        return 1

    loaded = lf.load(lf.LinearFlow("hang", hang), engine=engine)
    with pytest.raises(lf.FlowFailed) as caught:
        loaded.run()
    assert caught.value.failures["hang"].matches(lf.TaskTimeout)
    detail = loaded.flow_detail.find_by_name("hang")
    assert detail is not None and detail.attempts == 2
    assert cancelled == [1, 2]


def test_an_async_task_that_raises_its_own_timeout_error_is_not_a_task_timeout() -> None:
    @lf.task(timeout=STUCK)
    async def own_timeout() -> None:
        raise TimeoutError("the remote side timed out")

    with pytest.raises(lf.FlowFailed) as caught:
        lf.run(lf.LinearFlow("own", own_timeout))
    failure = caught.value.failures["own_timeout"]
    assert failure.matches(TimeoutError) and not failure.matches(lf.TaskTimeout)


@pytest.mark.parametrize("engine", ["serial", "parallel"])
def test_a_running_async_task_sees_stop_requested_on_suspend(engine: str) -> None:
    @lf.task(provides="polls")
    async def poll() -> int:
        polls = 0
        while not lf.current_task().stop_requested:
            polls += 1
            await asyncio.sleep(0.001)
        raise lf.Interrupted()

    @lf.task
    def after(polls: int) -> None:
        raise AssertionError("a suspended flow starts no new task")

    loaded = lf.load(lf.LinearFlow("stop", poll, after), engine=engine)

    def on_change(event: Any) -> None:
        if event.kind == "task" and event.name == "poll" and event.state == states.RUNNING:
            loaded.suspend()

    loaded.on_change(on_change)
    loaded.run()
    assert loaded.flow_detail.state == states.SUSPENDED
    detail = loaded.flow_detail.find_by_name("poll")
    assert detail is not None and detail.state == states.PENDING


@pytest.mark.parametrize("engine", ["serial", "parallel"])
def test_async_tasks_use_task_level_asyncio_across_real_waits(engine: str) -> None:
    # The serial engine takes a coroutine's first step outside the loop: the running
    # loop, the current task, timeouts, task groups and lf.current_task() must still hold
    # in that step and after a wait that really suspends.
    seen: dict[str, Any] = {}

    @lf.task(provides="pair", timeout=STUCK)
    async def pair() -> list[str]:
        loop, host = asyncio.get_running_loop(), asyncio.current_task()
        first, second = asyncio.Event(), asyncio.Event()

        async def ping() -> str:
            first.set()
            await second.wait()
            return "ping"

        async def pong() -> str:
            await first.wait()
            second.set()
            return "pong"

        async with asyncio.timeout(STUCK):
            async with asyncio.TaskGroup() as group:
                results = [group.create_task(ping()), group.create_task(pong())]
        seen["same"] = (asyncio.get_running_loop() is loop, asyncio.current_task() is host)
        seen["name"] = lf.current_task().name
        return [result.result() for result in results]

    assert lf.run(lf.LinearFlow("f", pair), engine=engine) == {"pair": ["ping", "pong"]}
    assert seen == {"same": (True, True), "name": "pair"}


def test_serial_async_tasks_fail_after_a_wait_and_cancel_inside_the_task() -> None:
    @lf.task(provides="a")
    async def waits_then_fails() -> None:
        await asyncio.sleep(0)
        raise ValueError("after a wait")

    @lf.task(provides="b")
    async def cancels_its_own_child() -> str:
        child = asyncio.get_running_loop().create_future()
        child.cancel()
        try:
            await child
        except asyncio.CancelledError:
            return "child cancelled"
        return "not cancelled"

    assert lf.run(lf.LinearFlow("c", cancels_its_own_child)) == {"b": "child cancelled"}
    with pytest.raises(lf.FlowFailed, match="after a wait"):
        lf.run(lf.LinearFlow("f", waits_then_fails))


def test_serial_async_timeout_after_an_instant_task_still_cancels() -> None:
    # One host task serves every coroutine of a serial run: a timeout of a later try
    # must cancel that try even after others ended in their first step.
    @lf.task(provides="quick")
    async def quick() -> int:
        return 1

    @lf.task(timeout=0.2)
    async def hang(quick: int) -> None:
        await asyncio.Event().wait()

    with pytest.raises(lf.FlowFailed) as caught:
        lf.run(lf.LinearFlow("f", quick, hang))
    assert caught.value.failures["hang"].matches(lf.TaskTimeout)
