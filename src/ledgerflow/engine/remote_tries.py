"""Tries sent to workers in other processes: their starts, results and dying pools.

Part of ``Runner`` (a mixin: it shares the runner's state), kept apart because it is
the one part that deals with workers elsewhere (process pools, Dask; see ``remote``):
a try becomes RUNNING when its worker starts it (``_begin``), its result may come over
the channel (``_result_sent``), and a pool that broke is replaced (``_pool_broke``).
"""

from __future__ import annotations

import signal
import threading
from collections import deque
from concurrent import futures
from typing import Any

from ledgerflow.engine.compile import Node
from ledgerflow.engine.context import TaskContext
from ledgerflow.engine.executors import Pool, worker_died
from ledgerflow.engine.remote import Channel, run_remote
from ledgerflow.errors import ProcessDied
from ledgerflow.models import Failure
from ledgerflow.storage import Storage

__all__ = ["BEGIN_LINGER", "UNSTARTED_BREAKS", "Outcome", "RemoteTries"]

#: A try's end: its node index, whether it succeeded, its result or exception.
Outcome = tuple[int, bool, Any]

#: Pool breaks in a row with no try started in between before the tries sent fail: a
#: task that kills its worker as it is unpickled would otherwise be sent for ever.
UNSTARTED_BREAKS = 3
#: Seconds a result that came over the channel may wait for the next try's start, so
#: that one commit records both (see ``_collect``).
BEGIN_LINGER = 0.01


class RemoteTries:
    """The runner's dealings with tries in other processes (mixed into ``Runner``)."""

    # Set by Runner.__init__: what these methods read and change of the run.
    nodes: list[Node]
    storage: Storage
    pool: Pool | None
    limit: int
    deferred: bool
    suspend_event: threading.Event
    ready: deque[int]
    inflight: dict[futures.Future[Any], int]
    tries: list[int]
    failed: dict[str, Failure]

    def _init_remote(self) -> None:
        """The state of tries sent away (called by ``Runner.__init__``)."""
        #: Where tasks in other processes reach this run (made at the first such task).
        self.channel: Channel | None = None
        self.tokens: dict[futures.Future[Any], str] = {}
        self.sent: dict[str, int] = {}  # token -> node index, of tries sent to a worker
        self.begun: set[str] = set()
        #: Tokens of the tries workers asked to start, handled (answered) in this thread.
        self.begins: list[str] = []
        self.begins_lock = threading.Lock()
        self.begin_arrived = threading.Event()
        #: Results workers sent with their try's end, by token (``Pool.delivers_results``).
        self.delivered: dict[str, Any] = {}
        self.by_token: dict[str, futures.Future[Any]] = {}
        #: Pool breaks since a try last started (see ``UNSTARTED_BREAKS``).
        self.unstarted_breaks = 0
        self.wake: futures.Future[None] = futures.Future()

    def _mark_running(self, index: int) -> None:
        raise NotImplementedError  # Runner's

    def _send(self, index: int, context: TaskContext, inputs: dict[str, Any]) -> None:
        """Send a try to a worker in another process (it becomes RUNNING when it starts)."""
        assert self.pool is not None
        node = self.nodes[index]
        if self.channel is None:
            self.channel = Channel(
                self._begin,
                self.pool.channel_host,
                self._worker_dropped,
                self._result_sent if self.pool.delivers_results else None,
            )
        token, remote = self.channel.open(context)
        self.sent[token] = index
        if not self.deferred:
            self.begun.add(token)
        try:
            future = self.pool.submit(run_remote, remote, node.task, inputs)
        except Exception as exc:
            if not self.pool.broken(exc):
                raise
            self.pool.replace()  # it broke since the last submit
            future = self.pool.submit(run_remote, remote, node.task, inputs)
        self.inflight[future] = index
        self.tokens[future] = token
        self.by_token[token] = future

    def _result_sent(self, token: str, result: Any) -> bool:
        """A worker sent its try's result (channel thread): this thread records it."""
        with self.begins_lock:
            self.delivered[token] = result
            if not self.wake.done():
                self.wake.set_result(None)
        return True

    def _take_delivered(self) -> list[Outcome]:
        """The outcomes of tries whose results came over the channel (their futures dropped)."""
        with self.begins_lock:
            delivered, self.delivered = self.delivered, {}
        outcomes: list[Outcome] = []
        for token, result in delivered.items():
            future = self.by_token.get(token)
            if future is None or future not in self.inflight:
                continue  # a try this run gave up on: nothing it sends counts
            index = self.inflight.pop(future)
            self._forget(future)
            outcomes.append((index, True, result))
        return outcomes

    def _await_next_begin(self) -> None:
        """Give a try sent ahead a moment to start, so its RUNNING commits with these results.

        The worker that sent a result starts the next try queued for it within a few
        milliseconds, and that try waits for its RUNNING commit: one commit for both
        takes a commit off every try's way (two per task on a store that syncs each).
        """
        with self.begins_lock:
            if self.begins or len(self.sent) <= len(self.begun):
                return  # a start is here already, or none is on its way
            self.begin_arrived.clear()
        self.begin_arrived.wait(BEGIN_LINGER)

    def _worker_dropped(self, token: str) -> None:
        """A running try's worker went away (channel thread): make sure its pool notices."""
        if self.pool is not None:
            self.pool.nudge()

    def _begin(self, token: str) -> tuple[bool, int] | None:
        """A worker starts a try (channel thread): the run's thread marks it RUNNING.

        None: this thread answers it, once that is committed (``_start_begun``).
        """
        if not self.deferred:  # marked when submitted (it may run inline, in this thread)
            index = self.sent.get(token)
            if index is None:
                return False, 0
            return True, self.storage.task_detail(self.nodes[index].name).attempts
        with self.begins_lock:
            self.begins.append(token)
            self.begin_arrived.set()
            if not self.wake.done():
                self.wake.set_result(None)
        return None

    def _start_begun(self) -> None:
        """Mark RUNNING the tries workers started, commit, then let them go on."""
        stopping = bool(self.failed) or self.suspend_event.is_set()
        # Refusals are answered at once; starts only as far as the capacity has room.
        room = len(self.begins) if stopping else max(0, self.limit - len(self.begun))
        with self.begins_lock:
            fresh = [t for t in self.begins if t not in self.begun]
            again = [t for t in self.begins if t in self.begun]
            # Those left wait for a try to finish (run_forward comes back then).
            begins, self.begins = again + fresh[:room], fresh[room:]
            self.wake = futures.Future()
            if self.delivered:  # a result that came in since _collect took them
                self.wake.set_result(None)
        answers: dict[str, int] = {}
        for token in begins:
            index = self.sent.get(token)
            if index is None or (stopping and token not in self.begun):
                continue  # it stays unstarted (NotStarted in the worker)
            if token not in self.begun:  # not a second start of one (Dask re-ran it)
                self.begun.add(token)
                self.unstarted_breaks = 0
                self._mark_running(index)
                assert self.channel is not None
                name = self.nodes[index].name
                self.channel.rebind(token, TaskContext(self.storage, name, self.suspend_event))
            answers[token] = self.storage.task_detail(self.nodes[index].name).attempts
        assert self.channel is not None
        try:
            self.storage.sync()
        except BaseException:
            answers.clear()  # not recorded as started: none may start
            raise
        finally:
            for token in begins:
                attempt = answers.get(token)
                self.channel.answer_begin(token, attempt is not None, attempt or 0)

    def _forget(self, future: futures.Future[Any]) -> bool:
        """Drop what tracks the try of ``future``; whether it started (True unless sent)."""
        token = self.tokens.pop(future, None)
        if token is None:
            return True
        self.by_token.pop(token, None)
        if self.channel is not None:
            self.channel.forget(token)
        self.sent.pop(token, None)
        begun = token in self.begun
        self.begun.discard(token)
        return begun

    def _pool_broke(self) -> list[Outcome]:
        """A process pool broke: fail the tries whose worker died, put the others back.

        The pool fails every future in it and kills its other workers.  A try whose
        worker connection dropped first (or, when none did, one that never said it
        began) died with its process: it fails with ProcessDied and its Retry applies.
        The others were killed by the pool, not by their task: each try ends
        INTERRUPTED (no Retry attempt spent) and runs again on the new pool.
        """
        assert self.pool is not None and self.channel is not None
        exits = self.pool.replace()
        broken = [f for f in self.inflight if self.pool.broken(f.exception())]
        unstarted = [f for f in broken if self.tokens[f] not in self.begun]
        broken = [f for f in broken if f not in unstarted]
        self.unstarted_breaks = 0 if broken else self.unstarted_breaks + 1
        outcomes: list[Outcome] = []
        for future in unstarted:
            index = self.inflight.pop(future)
            self._forget(future)
            if self.unstarted_breaks < UNSTARTED_BREAKS:
                self.ready.appendleft(index)  # sent, never started: send it again
                continue
            self._mark_running(index)  # a try after all: its Retry decides what follows
            outcomes.append((index, False, self._died_unstarted(index)))
        if outcomes:
            self.unstarted_breaks = 0
        # Every worker of the old pool is gone now; their connections' ends may still
        # be on their way to the channel's threads.
        self.channel.await_drops([self.tokens[f] for f in broken])
        dropped = {f: self.channel.dropped(self.tokens[f]) for f in broken}
        times = [t for t in dropped.values() if t is not None]
        first = min(times) if times else None
        pids = {f: self.channel.pids.get(self.tokens[f]) for f in broken}
        if all(pid in exits for pid in pids.values()):  # the exit codes tell
            dead = {f for f in broken if exits[pids[f] or 0] != -signal.SIGTERM}
        else:  # else the connection that dropped first
            dead = {f for f in broken if first is not None and dropped[f] == first}
        if not dead:  # no worker was heard to go: blame every try in flight
            dead = set(broken)
        for future in broken:
            index = self.inflight.pop(future)
            self._forget(future)
            exc = future.exception()
            assert exc is not None
            if future in dead:
                outcomes.append((index, False, worker_died(self.nodes[index].name, exc)))
                continue
            self.tries[index] -= 1
            self.storage.task_interrupted(self.nodes[index].name)
            self.ready.appendleft(index)
        return outcomes

    def _died_unstarted(self, index: int) -> ProcessDied:
        name = self.nodes[index].name
        return ProcessDied(
            f"the process pool broke {UNSTARTED_BREAKS} times in a row before task {name!r} "
            "or any other could start (a worker dies as it receives a task: one that kills "
            "its process when unpickled, or a worker that cannot start)"
        )
