"""The scheduler shared by the serial and parallel engines.

Readiness is tracked incrementally: each task keeps a count of unfinished
predecessors and becomes ready when it reaches zero, so a finished task costs
work proportional to its successors, never a scan of the whole flow.  The
serial engine runs each ready task inline; the parallel one submits them to an
executor.  Every state change goes through ``Storage``, which commits at the
``sync()`` points according to the save policy.
"""

from __future__ import annotations

import heapq
import inspect
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent import futures
from typing import Any

from ledgerflow import states
from ledgerflow.engine.aio import AsyncBridge, awaiting, in_context
from ledgerflow.engine.compile import Compiled
from ledgerflow.engine.context import TaskContext, call_in_context, execute_in_context
from ledgerflow.engine.executors import Pool, worker_died
from ledgerflow.engine.remote import NotStarted
from ledgerflow.engine.remote_tries import Outcome, RemoteTries
from ledgerflow.errors import (
    FlowCancelled,
    FlowFailed,
    Interrupted,
    SerializationError,
)
from ledgerflow.models import Failure
from ledgerflow.storage import Storage

__all__ = ["Runner"]

#: Task states that mean "execute() started in some run and was not undone".
RAN = frozenset({states.RUNNING, states.SUCCESS, states.FAILURE, states.RETRYING, states.REVERTING})


class Runner(RemoteTries):
    """Runs a compiled flow forward, retries, and reverts on failure."""

    def __init__(
        self,
        compiled: Compiled,
        storage: Storage,
        *,
        pool: Pool | None,
        suspend_event: threading.Event,
        aio: AsyncBridge | None = None,
    ) -> None:
        self.compiled = compiled
        #: Where async execute()/revert() coroutines run (the engine closes it).
        self.aio = aio if aio is not None else AsyncBridge()
        self.nodes = compiled.nodes
        self.storage = storage
        #: Where tasks run (None: inline, the serial engine); the runner starts (marks
        #: RUNNING) no more tasks at once than it can run.
        self.pool = pool
        self.limit = pool.limit if pool is not None else 1
        #: Tasks in other processes become RUNNING when a worker starts them (``begin``).
        self.deferred = pool is not None and pool.defers_start
        self.depth = pool.depth if pool is not None and self.deferred else self.limit
        self._init_remote()
        self.suspend_event = suspend_event
        self.remaining = [0] * len(self.nodes)
        self.ready: deque[int] = deque()
        self.delayed: list[tuple[float, int]] = []
        self.inflight: dict[futures.Future[Any], int] = {}
        self.done_inline: list[Outcome] = []
        self.tries = [0] * len(self.nodes)
        self.order: dict[int, None] = {}
        self.failed: dict[str, Failure] = {}
        self.causes: dict[str, BaseException] = {}
        self.scope_runs = [1] * len(compiled.scopes)
        #: Tasks whose revert raised in this run: the flow's own revert skips them (a
        #: resumed run, with a new Runner, tries them again as it continues the revert).
        self.revert_failed: set[int] = set()

    # ---- set-up ----------------------------------------------------------------
    def prepare(self) -> None:
        """Count unfinished predecessors and queue what can run, from stored states."""
        state = self.storage.task_state
        done = [state(node.name) == states.SUCCESS for node in self.nodes]
        for node in self.nodes:
            if done[node.index]:
                continue
            self.remaining[node.index] = sum(1 for p in node.preds if not done[p])
            if self.remaining[node.index] == 0:
                self.ready.append(node.index)
        started = [
            (detail.started_at, node.index)
            for node in self.nodes
            if (detail := self.storage.task_detail(node.name)).started_at is not None
            and (detail.state in RAN or self.storage.interrupted(node.name))
        ]
        self.order = dict.fromkeys(index for _, index in sorted(started))
        # Retry budgets survive a suspend or a crash: count on from what was stored.
        for node in self.nodes:
            if node.task.retry is not None and not done[node.index]:
                self.tries[node.index] = self.storage.tries(node.name)
        runs = self.storage.retry_runs()
        for scope in self.compiled.scopes:
            self.scope_runs[scope.index] = runs.get(scope.name, 1)

    # ---- forward ---------------------------------------------------------------
    def run_forward(self) -> str:
        """Run until SUCCESS, SUSPENDED or failure (then revert and raise FlowFailed)."""
        while True:
            self._promote_delayed()
            stopping = bool(self.failed) or self.suspend_event.is_set()
            launched: list[int] = []
            while self.ready and not stopping and len(self.inflight) + len(launched) < self.depth:
                index = self.ready.popleft()
                if not self.deferred:
                    self._mark_running(index)
                launched.append(index)
            if launched or self.inflight:
                # Results and the next RUNNING states commit together, before any
                # further task starts; the end of the run commits on its own.
                self.storage.sync()
            if launched and self.suspend_event.is_set() and not self.deferred:
                # A listener that heard of that commit (or a request) asked to stop
                # before these tasks started: they go back to what they were.
                for index in reversed(launched):
                    self.tries[index] -= 1
                    self.storage.unstart_task(self.nodes[index].name)
                    self.ready.appendleft(index)
                launched = []
            for index in launched:
                self._launch(index)
            if self.inflight or self.done_inline:
                for outcome in self._collect():
                    self._handle(*outcome)
                if self.wake.done() or self.begins:
                    self._start_begun()
                continue
            if self.failed:
                if self._retry_scope():
                    continue
                self.revert_all()
            if self.suspend_event.is_set() and (self.ready or self.delayed):
                return states.SUSPENDED
            if self.ready:
                continue
            if self.delayed:
                self.storage.sync()
                self.suspend_event.wait(max(0.0, self.delayed[0][0] - time.monotonic()))
                continue
            return states.SUCCESS

    def _promote_delayed(self) -> None:
        now = time.monotonic()
        while self.delayed and self.delayed[0][0] <= now:
            self.ready.append(heapq.heappop(self.delayed)[1])

    def _mark_running(self, index: int) -> None:
        self.tries[index] += 1
        self.order.pop(index, None)
        self.order[index] = None
        node = self.nodes[index]
        tries = self.tries[index] if node.task.retry is not None else None
        self.storage.start_task(node.name, tries)

    def _launch(self, index: int) -> None:
        node = self.nodes[index]
        inputs = self.storage.fetch_args(node.name)
        if node.task.is_async:
            self._launch_async(index, inputs)
            return
        context = TaskContext(self.storage, node.name, self.suspend_event)
        if self.pool is None:
            try:
                result = execute_in_context(context, node.task, inputs)
            except Exception as exc:
                self.done_inline.append((index, False, exc))
            else:
                self.done_inline.append((index, True, result))
            return
        if self.pool.shares_memory:
            self.inflight[self.pool.submit(execute_in_context, context, node.task, inputs)] = index
            return
        self._send(index, context, inputs)

    def _launch_async(self, index: int, inputs: dict[str, Any]) -> None:
        """An async execute(): awaited inline (serial) or started on the loop (parallel)."""
        node = self.nodes[index]
        context = TaskContext(self.storage, node.name, self.suspend_event)
        coro = in_context(context, node.task.call_execute, inputs, timeout=node.task.timeout)
        if self.pool is not None:
            self.inflight[self.aio.submit(coro)] = index
            return
        try:
            result = self.aio.call(coro)
        except Exception as exc:
            self.done_inline.append((index, False, exc))
        else:
            self.done_inline.append((index, True, result))

    def _await_returned(self, index: int, coro: Any) -> tuple[bool, Any]:
        context = TaskContext(self.storage, self.nodes[index].name, self.suspend_event)
        try:
            return True, self.aio.call(awaiting(context, coro))
        except Exception as exc:
            return False, exc

    def _collect(self) -> list[Outcome]:
        if self.done_inline:
            outcomes, self.done_inline = self.done_inline, []
            return outcomes
        timeout = None
        if self.delayed:
            timeout = max(0.0, self.delayed[0][0] - time.monotonic())
        # A worker starting a try wakes this wait too (``_begin``); run_forward then
        # starts it, after recording what finished, so that RUNNING never exceeds the
        # capacity even for a moment.
        finished, _ = futures.wait([*self.inflight, self.wake], timeout, futures.FIRST_COMPLETED)
        finished.discard(self.wake)
        # Taken first: a future whose result came over the channel returned None.
        outcomes = self._take_delivered() if self.delivered else []
        if outcomes:
            self._await_next_begin()
        finished.intersection_update(self.inflight)
        if self.pool is not None and any(self.pool.broken(f.exception()) for f in finished):
            return outcomes + self._pool_broke()
        for future in finished:
            index = self.inflight.pop(future)
            exc = future.exception()
            if not self._forget(future):
                if isinstance(exc, NotStarted):
                    self.ready.appendleft(index)  # told not to start: nothing was recorded
                    continue
                self._mark_running(index)  # it failed before starting: still a try
            if exc is not None:
                exc = worker_died(self.nodes[index].name, exc) or exc
            outcomes.append((index, False, exc) if exc else (index, True, future.result()))
        return outcomes

    def close(self) -> None:
        """Stop answering workers and shut down what the run made."""
        if self.channel is not None:
            self.channel.close()
        if self.pool is not None:
            self.pool.shutdown()

    def _handle(self, index: int, ok: bool, value: Any) -> None:
        node = self.nodes[index]
        if ok and inspect.iscoroutine(value):
            # A plain function that returned a coroutine (a wrapped async function): await it.
            ok, value = self._await_returned(index, value)
        if ok:
            try:
                self.storage.task_succeeded(node.name, value)
            except (SerializationError, ValueError) as exc:
                # An unstorable result fails the task like any exception: its Retry
                # applies when the exception is in ``on`` (a later try may return
                # something else).
                self._fail(index, exc)
                return
            for succ in node.succs:
                self.remaining[succ] -= 1
                if self.remaining[succ] == 0:
                    self.ready.append(succ)
            return
        self._fail(index, value)

    def _fail(self, index: int, exc: BaseException) -> None:
        if self.storage.broken is not None:
            # The store failed under the task (a checkpoint), not the task: stop the run
            # and leave it resumable, reverting nothing.
            raise self.storage.broken
        node = self.nodes[index]
        if isinstance(exc, Interrupted):
            # Stopped on request: back to PENDING with its checkpoint, no try spent.
            self.tries[index] -= 1
            self.storage.task_interrupted(node.name)
            self.ready.appendleft(index)
            self.suspend_event.set()
            return
        failure = Failure.from_exception(exc)
        retry = node.task.retry
        if retry is not None and retry.should_retry(exc, self.tries[index]):
            self.storage.task_failed(node.name, failure, retrying=True)
            due = time.monotonic() + retry.delay(self.tries[index])
            heapq.heappush(self.delayed, (due, index))
            return
        self.storage.task_failed(node.name, failure)
        self.failed[node.name] = failure
        self.causes[node.name] = exc

    # ---- subflow retry ---------------------------------------------------------
    def _retry_scope(self) -> bool:
        """Revert and rerun the innermost retrying flow around the failures, if any."""
        scope_ids = {self.nodes[self.compiled.by_name[n].index].scope for n in self.failed}
        scope_id = scope_ids.pop() if len(scope_ids) == 1 else None
        while scope_id is not None:
            scope = self.compiled.scopes[scope_id]
            if self.scope_runs[scope_id] < scope.retry.attempts and all(
                isinstance(exc, scope.retry.on) for exc in self.causes.values()
            ):
                break
            scope_id = scope.parent
        if scope_id is None:
            return False
        scope = self.compiled.scopes[scope_id]
        members = set(scope.members)
        if not self.revert_tasks(
            [i for i in reversed(self.order) if i in members], dict(self.failed)
        ):
            return False
        for index in scope.members:
            self.storage.reset_task(self.nodes[index].name)
            self.tries[index] = 0
            self.order.pop(index, None)
        self.scope_runs[scope_id] += 1
        self.storage.set_retry_runs(
            {s.name: self.scope_runs[s.index] for s in self.compiled.scopes}
        )
        self.storage.sync()
        self.ready = deque(i for i in self.ready if i not in members)
        self.delayed = [d for d in self.delayed if d[1] not in members]
        heapq.heapify(self.delayed)
        due = time.monotonic() + scope.retry.delay(self.scope_runs[scope_id] - 1)
        state = self.storage.task_state
        for index in scope.members:
            preds = self.nodes[index].preds
            self.remaining[index] = sum(1 for p in preds if state(self.nodes[p].name) != "SUCCESS")
            if self.remaining[index] == 0:
                heapq.heappush(self.delayed, (due, index))
        self.failed.clear()
        self.causes.clear()
        return True

    # ---- revert ----------------------------------------------------------------
    def revert_tasks(self, indices: list[int], flow_failures: dict[str, Failure]) -> bool:
        """Revert tasks in the given order; False if a revert raised."""
        all_ok = True
        for index in indices:
            node = self.nodes[index]
            if index in self.revert_failed:
                all_ok = False
                continue
            state = self.storage.task_state(node.name)
            if state not in RAN | {states.REVERT_FAILURE} and not self.storage.interrupted(
                node.name
            ):
                continue
            self.storage.revert_started(node.name)
            self.storage.sync()
            inputs = self.storage.fetch_args(node.name)
            result = self.storage.revert_result(node.name)
            try:
                self._call_revert(node.index, inputs, result, flow_failures)
            except Exception as exc:
                self.storage.task_reverted(node.name, Failure.from_exception(exc))
                self.revert_failed.add(index)
                all_ok = False
            else:
                self.storage.task_reverted(node.name)
        return all_ok

    def _call_revert(
        self, index: int, inputs: dict[str, Any], result: Any, flow_failures: dict[str, Failure]
    ) -> None:
        task = self.nodes[index].task
        context = TaskContext(self.storage, task.name, self.suspend_event)
        # Reverts run in the engine's thread, whatever the executor: the context works.
        outcome = call_in_context(context, task.call_revert, inputs, result, flow_failures)
        if inspect.isawaitable(outcome):  # an async revert: await it on the run's loop
            self.aio.call(awaiting(context, outcome))

    def revert_all(
        self, reason: Callable[[], dict[str, Failure]] | None = None, *, cancelled: bool = False
    ) -> None:
        """Revert every task that ran, newest first, then raise FlowFailed (FlowCancelled)."""
        failures = dict(self.failed) if reason is None else reason()
        if self.storage.flow_state != states.REVERTING:
            self.storage.set_flow_state(states.REVERTING)
        self.storage.sync(force=True)
        ran = [i for i in reversed(self.order)]
        known = set(ran)
        # Tasks that ran in an earlier process but whose start order was not known.
        ran += [n.index for n in reversed(self.nodes) if n.index not in known]
        ok = self.revert_tasks(ran, failures)
        end = states.REVERTED if ok else states.FAILURE
        self.storage.set_flow_state(states.CANCELLED if ok and cancelled else end)
        self.storage.sync(force=True)
        if cancelled:
            raise FlowCancelled(self.compiled.flow.name, failures)
        error = FlowFailed(self.compiled.flow.name, failures)
        cause = next(iter(self.causes.values()), None)
        raise error from cause
