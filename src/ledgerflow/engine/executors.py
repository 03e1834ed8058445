"""What the parallel engine needs to know about the executor it runs tasks on.

Three things differ between executors, and this module is the one place that knows them:

- **capacity**: how many tasks it really runs at once.  The runner starts (marks
  RUNNING) no more than that, so that RUNNING in the store means running.  A thread or
  process pool has as many as its workers; a Dask cluster as many as its workers'
  threads (read from the scheduler when the run starts); an executor of another kind
  is given ``max_workers``, else one per CPU.
- **where a task runs**: threads of this process share the run's ``Storage``, so the
  task context works as is; anywhere else (a process pool, Dask, an unknown executor)
  the task gets a ``RemoteContext`` that asks the engine (``engine/remote.py``), and for
  process pools and Dask the tasks must pickle (checked before any task runs).
- **Dask specifics**: a Dask client's ``get_executor()`` submits with ``pure=True`` by
  default, so a retried try would get the cached failure of the first: every submit
  here says ``pure=False``.  A ``distributed.Client`` itself is accepted too.

A process pool breaks as a whole when one of its workers dies; ``Pool.replace`` gives
the run a new one with as many workers (the engine shuts it down when the run ends).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import socket
import sys
from collections.abc import Callable, Iterable
from concurrent import futures
from concurrent.futures.process import BrokenProcessPool
from typing import Any
from urllib.parse import urlsplit

from ledgerflow.errors import ProcessDied
from ledgerflow.task import Task

__all__ = ["Pool", "pool_for", "worker_died"]

THREADS, PROCESSES, DASK, OTHER = "threads", "processes", "dask", "other"


def _dask_types() -> tuple[Any, Any] | None:
    """(Client, ClientExecutor) when distributed is imported (it is never imported here)."""
    if "distributed" not in sys.modules:
        return None
    from distributed import Client
    from distributed.cfexecutor import ClientExecutor

    return Client, ClientExecutor


def _kind(executor: Any) -> str:
    if isinstance(executor, futures.ThreadPoolExecutor):
        return THREADS
    if isinstance(executor, futures.ProcessPoolExecutor):
        return PROCESSES
    dask = _dask_types()
    if dask is not None and isinstance(executor, dask):
        return DASK
    return OTHER


def _dask_client(executor: Any) -> Any:
    # ClientExecutor keeps its client in ``_client`` and offers no public accessor.
    return executor._client


def _pool_workers(executor: futures.Executor) -> int:
    # The stdlib pools keep their size in ``_max_workers`` (set by __init__ since 3.2)
    # and offer no public accessor; only these two exact kinds are read so.
    workers = executor._max_workers  # type: ignore[attr-defined]
    return int(workers)


def _dask_threads(client: Any) -> int:
    return max(1, int(sum(client.nthreads().values())))


def _dask_host(client: Any) -> str:
    """The address of this host that the scheduler (and so its workers) can reach."""
    host = urlsplit(client.scheduler.address).hostname or "127.0.0.1"
    if host in ("127.0.0.1", "localhost", "::1"):
        return "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((host, 9))  # UDP: picks the route, sends nothing
        return str(probe.getsockname()[0])


_CAPACITY: dict[str, Callable[[Any], int | None]] = {
    THREADS: _pool_workers,
    PROCESSES: _pool_workers,
    DASK: lambda executor: _dask_threads(_dask_client(executor)),
    OTHER: lambda executor: None,
}


def _dask_submit(client: Any, func: Callable[..., Any], *args: Any) -> futures.Future[Any]:
    """``client.submit`` with pure=False, as a concurrent.futures Future.

    ClientExecutor's own wrapping hops through the client's event loop once more; this
    resolves the Future from the Dask future's callback, a few ms sooner per task.
    """
    done: futures.Future[Any] = futures.Future()

    def resolve(dask_future: Any) -> None:
        try:
            done.set_result(dask_future.result())
        except BaseException as exc:
            done.set_exception(exc)

    dask_future = client.submit(func, *args, pure=False)
    dask_future.add_done_callback(resolve)
    done.add_done_callback(lambda _: dask_future.release() if done.cancelled() else None)
    return done


class Pool:
    """The executor one parallel run submits to, with what the runner must know of it."""

    def __init__(self, executor: Any, max_workers: int | None, *, owned: bool = False) -> None:
        self.kind = _kind(executor)
        client_type, _ = _dask_types() or (None, None)
        if client_type is not None and isinstance(executor, client_type):
            executor = executor.get_executor(pure=False)
        self.executor = executor
        #: Whether the run made this executor (and so shuts it down).
        self.owned = owned
        self.capacity = _CAPACITY[self.kind](executor)
        if max_workers is not None:
            self.limit = min(max_workers, self.capacity or max_workers)
        else:
            self.limit = self.capacity or os.cpu_count() or 1

    @property
    def shares_memory(self) -> bool:
        """Whether tasks run in threads of this process (the task context works as is)."""
        return self.kind == THREADS

    @property
    def delivers_results(self) -> bool:
        """Whether a try's result comes back over the engine's channel, not the executor.

        Dask hands a result to its client only after a fetch from the worker (a round
        trip through the scheduler, most of a short task's overhead); the worker that
        ran the try is connected to the engine already and sends it straight there.
        """
        return self.kind == DASK

    @property
    def channel_host(self) -> str:
        """Where the engine listens for this executor's workers (see ``engine/remote.py``)."""
        if self.kind == DASK:
            return _dask_host(_dask_client(self.executor))
        return "127.0.0.1"

    def submit(self, func: Callable[..., Any], *args: Any) -> futures.Future[Any]:
        """Submit ``func(*args)``; a Dask executor never reuses a result (pure=False)."""
        if self.kind == DASK:
            return _dask_submit(_dask_client(self.executor), func, *args)
        return self.executor.submit(func, *args)  # type: ignore[no-any-return]

    @property
    def defers_start(self) -> bool:
        """Whether a try becomes RUNNING when a worker starts it, not when it is submitted.

        Only for the kinds known to run tasks elsewhere: another executor might run them
        inline, in the engine's own thread, which cannot then answer the worker.
        """
        return self.kind in (PROCESSES, DASK)

    @property
    def depth(self) -> int:
        """How many tries to have out at once (started or waiting for a worker).

        Tries run only as workers free up and become RUNNING then (``engine/remote.py``),
        so a Dask run may queue a second round at the scheduler: a worker that finishes
        one finds the next there instead of waiting a round trip to the engine.  Not when
        ``max_workers`` is below the cluster's threads: more workers would start them.
        """
        if self.kind == DASK and self.limit == self.capacity:
            return 2 * self.limit
        return self.limit

    def check_picklable(self, tasks: Iterable[Task]) -> None:
        """TypeError naming the first task that cannot be sent to this executor's workers."""
        if self.kind not in (PROCESSES, DASK):
            return
        dumps: Callable[[Any], Any] = pickle.dumps
        if self.kind == DASK:
            from distributed.protocol.pickle import dumps as dask_dumps

            dumps = dask_dumps
        for task in tasks:
            try:
                dumps(task)
            except Exception as exc:
                raise TypeError(
                    f"task {task.name!r} cannot run on a {self.kind} executor: it does not "
                    f"pickle ({type(exc).__name__}: {exc}); define it at module level"
                ) from exc

    def broken(self, exc: BaseException | None) -> bool:
        """Whether ``exc`` says this pool broke (a worker died) and must be replaced."""
        return self.kind == PROCESSES and isinstance(exc, BrokenProcessPool)

    def nudge(self) -> None:
        """Make a process pool look at its workers again (one of them may have died).

        A pool's manager thread watches only the workers it knew of when it last woke,
        and ``submit`` wakes it before starting the worker it adds (CPython 3.11-3.13):
        the death of that worker goes unseen until something else wakes the manager,
        and a run whose other tries wait on the dead one would wait for ever.

        The manager is woken through its wakeup pipe (``_executor_manager_thread_wakeup``,
        CPython 3.9+, no accessor).  A no-op submit would wake it too, but may start a
        worker just as the manager, seeing the death, ends the pool's workers: that one
        it never ends, and its shutdown then waits for it for ever.
        """
        if self.kind != PROCESSES:
            return
        wakeup = getattr(self.executor, "_executor_manager_thread_wakeup", None)
        if wakeup is None:  # another Python: the public way
            with contextlib.suppress(BrokenProcessPool, RuntimeError):
                self.executor.submit(int)
            return
        with contextlib.suppress(OSError, ValueError):  # closed: the pool is shut down
            wakeup.wakeup()

    def replace(self) -> dict[int, int | None]:
        """Swap a broken process pool for a new one of the same size (owned by the run).

        Returns the old workers' exit codes by pid: the pool itself ends the workers left
        with SIGTERM, so any other end is the death that broke it.
        """
        old = self.executor
        # The pool's worker processes (``_processes``, pid -> Process; no accessor).
        workers = dict(old._processes or {})
        # The pool has already failed every future in it; wait until its workers are gone,
        # so that the engine has heard of each worker's end before judging them.
        old.shutdown(wait=True)
        # The same size and start method (``_mp_context``, kept since 3.7, no accessor).
        context = old._mp_context
        self.executor = futures.ProcessPoolExecutor(self.capacity, mp_context=context)
        self.owned = True
        return {pid: process.exitcode for pid, process in workers.items()}

    def shutdown(self) -> None:
        """Shut the executor down if the run made it."""
        if self.owned:
            self.executor.shutdown(wait=True)


def pool_for(kind: str, executor: Any, max_workers: int | None) -> Pool | None:
    """The pool a run of ``kind`` submits to (the parallel one makes a thread pool if none)."""
    if kind != "parallel":
        return None
    if executor is None:
        threads = futures.ThreadPoolExecutor(max_workers, thread_name_prefix="ledgerflow")
        return Pool(threads, max_workers, owned=True)
    return Pool(executor, max_workers)


def worker_died(name: str, exc: BaseException) -> ProcessDied | None:
    """The failure of a try whose worker process died (``exc`` from the executor), else None."""
    text = None
    if isinstance(exc, BrokenProcessPool):
        text = "the process-pool worker running task {!r} died (the pool was replaced)"
    elif type(exc).__name__ == "KilledWorker":  # distributed.scheduler.KilledWorker
        text = "the Dask worker running task {!r} died ({})"
    if text is None:
        return None
    return ProcessDied(text.format(name, exc))
