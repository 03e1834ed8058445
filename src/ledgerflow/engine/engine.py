"""The engine object ``lf.load`` returns: runs (or resumes) one flow detail."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent import futures
from typing import Any

from ledgerflow import states
from ledgerflow.engine import observe
from ledgerflow.engine.aio import AsyncBridge
from ledgerflow.engine.compile import Compiled
from ledgerflow.engine.runner import Runner
from ledgerflow.models import FlowDetail, LogBook
from ledgerflow.persistence.base import Backend
from ledgerflow.storage import StateChange, Storage

__all__ = ["ENGINES", "Engine"]

ENGINES = ("serial", "parallel")


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

    def run(self) -> dict[str, Any]:
        """Run the flow to the end; return every provided symbol; FlowFailed on failure."""
        own_executor: futures.Executor | None = None
        executor = self._executor
        limit = 1
        if self.kind == "parallel":
            if executor is None:
                own_executor = executor = futures.ThreadPoolExecutor(
                    self._max_workers, thread_name_prefix="ledgerflow"
                )
            limit = self._max_workers or getattr(executor, "_max_workers", None) or 2**31
        aio = AsyncBridge(self._caller_loop)
        runner = Runner(
            self.compiled,
            self.storage,
            executor=executor,
            limit=limit,
            suspend_event=self._suspend,
            aio=aio,
        )
        try:
            with observe.watching(self.storage):
                return self._run(runner)
        finally:
            aio.close()
            self._suspend.clear()
            if own_executor is not None:
                own_executor.shutdown(wait=True)
            self.storage.close()
            if self._owned_backend is not None:
                self._owned_backend.close()

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
