"""The engine object ``lf.load`` returns: runs (or resumes) one flow detail."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

from ledgerflow import states
from ledgerflow.engine import executors, observe
from ledgerflow.engine.aio import AsyncBridge
from ledgerflow.engine.compile import Compiled
from ledgerflow.engine.lease import DEFAULT_LEASE, Lease, check_lease, check_wait
from ledgerflow.engine.runner import Runner
from ledgerflow.errors import FlowCancelled
from ledgerflow.models import FlowDetail, LogBook
from ledgerflow.persistence.base import Backend
from ledgerflow.persistence.ownership import Ownership
from ledgerflow.storage import StateChange, Storage

__all__ = ["ENGINES", "Engine"]

ENGINES = ("serial", "parallel")
LOG = logging.getLogger("ledgerflow.engine")


class Engine:
    """Runs a compiled flow against its ``Storage``; use ``lf.load`` to make one."""

    def __init__(
        self,
        compiled: Compiled,
        storage: Storage,
        *,
        kind: str = "serial",
        executor: futures.Executor | None = None,
        max_workers: int | None = None,
        owned_backend: Backend | None = None,
        lease: float = DEFAULT_LEASE,
        wait: float = 0.0,
    ) -> None:
        if kind not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {kind!r}")
        if max_workers is not None and (not isinstance(max_workers, int) or max_workers < 1):
            raise ValueError(f"max_workers must be a positive integer, not {max_workers!r}")
        self.compiled = compiled
        self.storage = storage
        self.kind = kind
        self._executor = executor
        self._max_workers = max_workers
        self._owned_backend = owned_backend
        self._suspend = threading.Event()
        #: The loop of an ``arun()`` caller: async tasks run there.
        self._caller_loop: asyncio.AbstractEventLoop | None = None
        self._cancel = threading.Event()
        self.lease = check_lease(lease)
        self.wait = check_wait(wait)
        #: Fence and owner of the flow when this engine read it (lf.load: just written).
        self.seen_fence = 0
        self.seen_owner: str | None = None
        #: The ownership read with the flow (resume): the take's first compare-and-set uses it.
        self.seen: Ownership | None = None
        #: Writes to make once the flow is taken (a refused run must write nothing).
        self.after_take: list[Callable[[], Any]] = []

    @property
    def book(self) -> LogBook:
        """The logbook holding this run's flow detail."""
        return self.storage.book

    @property
    def flow_detail(self) -> FlowDetail:
        """This run's flow detail (live: it changes as the flow runs)."""
        return self.storage.flow_detail

    def on_change(self, callback: Callable[[StateChange], Any]) -> None:
        """Call ``callback(event)`` on every flow and task state change."""
        self.storage.add_listener(callback)

    def suspend(self) -> None:
        """Stop after the tasks in flight; ``run()`` then returns and the flow is SUSPENDED."""
        self._suspend.set()

    async def arun(self) -> dict[str, Any]:
        """``run()`` from inside a running event loop, without blocking it.

        The engine works in a thread; async tasks run on this loop, sync ones in that
        thread (serial) or the executor (parallel).
        """
        self._caller_loop = asyncio.get_running_loop()
        try:
            return await asyncio.to_thread(self.run)
        finally:
            self._caller_loop = None

    def use_executor(self, executor: futures.Executor) -> None:
        """Run tasks on ``executor`` (a resume may pick another than the first run had)."""
        self._executor = executor

    def use_max_workers(self, max_workers: int) -> None:
        """Run at most ``max_workers`` tasks at once."""
        if not isinstance(max_workers, int) or isinstance(max_workers, bool) or max_workers < 1:
            raise ValueError(f"max_workers must be a positive integer, not {max_workers!r}")
        self._max_workers = max_workers

    def _request(self, request: str) -> None:
        """A suspend or cancel request stored for the flow reached this engine."""
        if request == "cancel":
            self._cancel.set()
        self._suspend.set()

    def run(self) -> dict[str, Any]:
        """Run the flow to the end; return every provided symbol; FlowFailed on failure."""
        try:
            pool = executors.pool_for(self.kind, self._executor, self._max_workers)
            if pool is not None:
                pool.check_picklable(node.task for node in self.compiled.nodes)
        except BaseException:
            self._close_storage()
            raise
        aio = AsyncBridge(self._caller_loop)
        runner = Runner(
            self.compiled,
            self.storage,
            pool=pool,
            suspend_event=self._suspend,
            aio=aio,
        )
        try:
            with self._signals_suspend(), observe.watching(self.storage):
                return self._owned_run(runner)
        finally:
            aio.close()
            self._suspend.clear()
            self._cancel.clear()
            runner.close()
            self._close_storage()

    def _close_storage(self) -> None:
        self.storage.close()
        if self._owned_backend is not None:
            self._owned_backend.close()

    @contextlib.contextmanager
    def _signals_suspend(self) -> Iterator[None]:
        """In the main thread, SIGTERM and Ctrl-C suspend the flow; a second Ctrl-C aborts."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_signal(signum: int, frame: object) -> None:
            if signum == signal.SIGINT and self._suspend.is_set():
                raise KeyboardInterrupt  # the second Ctrl-C: stop at once
            LOG.warning(
                "%s: suspending the flow after the tasks in flight", signal.strsignal(signum)
            )
            self._suspend.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _owned_run(self, runner: Runner) -> dict[str, Any]:
        """Take the flow, run it, and let go however the run ends."""
        storage = self.storage
        if storage.flow_state == states.CANCELLED:
            raise FlowCancelled(self.compiled.flow.name)
        if storage.flow_state == states.SUCCESS:
            return storage.results()
        flow = storage.flow_detail
        lease = Lease(
            storage.backend,
            storage.connection,
            flow.uuid,
            self.lease,
            self._request,
            self._suspend.set,
        )
        seen, self.seen = self.seen, None  # only the first run may start from that read
        taken = lease.take(self.wait, seen)
        flow.owner, flow.fence, flow.lease_expires_at = (
            taken.owner,
            taken.fence,
            taken.lease_expires_at,
        )
        storage.fence = (flow.uuid, taken.fence)
        # The commit that writes the flow's end lets go of it too: no commit of its own.
        storage.release_at_end(lease.release_change(), lease.stop_heartbeat)
        if taken.request is not None:
            self._request(taken.request)
        try:
            if taken.fence != self.seen_fence + 1 or self.seen_owner is not None:
                # Someone may have written since this engine read the flow (its owner
                # then, or one that took and let go meanwhile): continue from the store.
                storage.reload()
                if storage.flow_state == states.CANCELLED:
                    raise FlowCancelled(self.compiled.flow.name)
            for write in self.after_take:
                write()
            if storage.flow_state == states.SUCCESS:
                return storage.results()
            lease.start_heartbeat()
            if self._cancel.is_set():
                return self._cancelled(runner)
            results = self._run(runner)
            if self._cancel.is_set() and storage.flow_state == states.SUSPENDED:
                return self._cancelled(runner)
            return results
        finally:
            if storage.released:
                lease.released()
            else:
                lease.release(clear_cancel=storage.flow_state in states.ENDED)
            flow.owner = flow.lease_expires_at = None

    def _cancelled(self, runner: Runner) -> dict[str, Any]:
        """Revert what ran, end CANCELLED and raise FlowCancelled."""
        self.storage.close_dead_tries()
        runner.prepare()
        runner.revert_all(self.storage.failures, cancelled=True)
        raise AssertionError("revert_all raises")  # pragma: no cover

    def _run(self, runner: Runner) -> dict[str, Any]:
        storage = self.storage
        # Nothing of this engine runs yet: a try recorded RUNNING died with its process.
        storage.close_dead_tries()
        state = storage.flow_state
        if state == states.SUCCESS:
            return storage.results()
        if state in (states.REVERTING, states.FAILURE):
            # Finish the revert (FAILURE: try the reverts that raised again) and stop: a
            # task whose revert failed left its effects behind, so nothing runs forward
            # until the flow is REVERTED and resumed once more.
            runner.prepare()
            runner.revert_all(storage.failures)
        if state == states.REVERTED:  # runs again from the start, with new budgets
            for node in self.compiled.nodes:
                if storage.task_state(node.name) != states.PENDING:
                    storage.reset_task(node.name)
            if storage.retry_runs():
                storage.set_retry_runs({})
        self._finish_interrupted_reverts(runner)
        storage.set_flow_state(states.RUNNING)
        runner.prepare()
        outcome = runner.run_forward()
        storage.set_flow_state(outcome)
        storage.sync(force=True)
        return storage.results()

    def _finish_interrupted_reverts(self, runner: Runner) -> None:
        """A subflow retry died mid-revert: finish that revert, then run the task again."""
        for node in self.compiled.nodes:
            if self.storage.task_state(node.name) == states.REVERTING:
                runner.revert_tasks([node.index], self.storage.failures())
                self.storage.reset_task(node.name)

    def __repr__(self) -> str:
        return f"<Engine {self.kind} {self.storage!r}>"
