"""``lf.Conductor``: claims jobs from a board and runs their flows to a persisted end.

A claim is a lease on the job's flow.  Each claimed job runs in a worker thread of this
conductor: the flow is rebuilt from the factory saved in its logbook and resumed under
the flow's own ownership (owner, fence, lease in the logbook store), which is the
authoritative fence.  One heartbeat thread renews this conductor's claims every third
of the lease; a claim found taken over suspends its flow (the engine's writes are
fenced out anyway).  The job's end is the flow's persisted state, never inferred from
an exception: the engine's copy once everything it holds is committed, else read back
from the store.  SUCCESS makes it DONE, REVERTED or FAILURE FAILED, CANCELLED
CANCELLED; anything else (a stop, a storage failure, a flow held elsewhere) hands it back.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

from ledgerflow import states
from ledgerflow.engine import identity
from ledgerflow.engine.lease import check_lease
from ledgerflow.errors import (
    FencedOut,
    FlowBusy,
    FlowFailed,
    LedgerflowError,
    NotFound,
    StorageError,
)
from ledgerflow.jobs.board import Idle, JobBoard, flow_outcome
from ledgerflow.jobs.model import CLAIMED, FAILED, READY, Job

__all__ = ["Conductor"]

LOG = logging.getLogger("ledgerflow.conductor")
#: Longest wait before a job handed back after a storage failure is claimed again.
_MAX_BACKOFF: Final = 30.0
#: First and longest pause between tries of a completion or hand-back the board refused.
_FIRST_RETRY: Final = 0.05
_MAX_RETRY: Final = 2.0
_instances = itertools.count(1)


@dataclass
class _Work:
    """One claimed job in hand."""

    job: Job
    engine: Any = None
    lost: bool = False
    done: threading.Event = field(default_factory=threading.Event)


def _check_allow(allow: Iterable[str] | str | None) -> tuple[str, ...] | None:
    if allow is None:
        return None
    if isinstance(allow, str):
        allow = [allow]
    names = tuple(allow)
    for name in names:
        if not isinstance(name, str) or not name:
            raise TypeError(f"allow must hold module names or prefixes, not {name!r}")
    return names


def _allowed(module: str, allow: tuple[str, ...] | None) -> bool:
    if allow is None:
        return True
    return any(module == name or (name.endswith(".") and module.startswith(name)) for name in allow)


def _process_of(owner: str) -> str:
    """The ``host:pid:start`` part of a conductor's owner id."""
    return owner.rpartition("@")[2]


class Conductor:
    """Claims up to ``workers`` jobs of ``board`` and runs each flow to its end."""

    def __init__(
        self,
        board: JobBoard,
        *,
        name: str | None = None,
        workers: int = 1,
        lease: float = 15.0,
        poll: float = 1.0,
        allow: Iterable[str] | str | None = None,
        executor: futures.Executor | None = None,
        on_finish: Callable[[Job, str], Any] | None = None,
    ) -> None:
        if not isinstance(board, JobBoard):
            raise TypeError(f"board must be a JobBoard, not {type(board).__name__}")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive integer, not {workers!r}")
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f"name must be a non-empty string or None, not {name!r}")
        self.board = board
        self.name = name or "conductor"
        self.workers = workers
        self.lease = check_lease(lease)
        self.poll = check_lease(poll)
        self.allow = _check_allow(allow)
        self.executor = executor
        self.on_finish = on_finish
        #: Unique per process start (and per conductor in it): a restart strands nothing.
        self.owner = f"{self.name}:{next(_instances)}@{identity.this_process()}"
        #: How many jobs this conductor ended in each state, plus "handed back".
        self.counts: Counter[str] = Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._active: dict[str, _Work] = {}
        self._wake = threading.Event()
        self._storage_failures = 0
        self._schema_ready = False
        #: Factories this conductor imported and built: a read made before the next
        #: import of one decodes its records to their classes (see ``_engine``).
        self._built: set[str] = set()
        #: A claim failed: it may have landed without our hearing of it (see _recover_claims).
        self._claim_unsure = False
        #: What the last empty claim's look for work found (``_pause`` waits by it).
        self._idle: Idle | None = None
        #: ``workers`` long-lived threads: each keeps one pooled connection to the board.
        self._pool: futures.ThreadPoolExecutor | None = None

    # ---- public -----------------------------------------------------------------------
    def run(self, *, until_idle: bool = False) -> None:
        """Claim and run jobs until ``stop()`` (or, with ``until_idle``, until none is left)."""
        self._stop.clear()
        heartbeat = threading.Thread(target=self._heartbeat, name="ledgerflow-claims", daemon=True)
        heartbeat.start()
        self._pool = futures.ThreadPoolExecutor(self.workers, thread_name_prefix="ledgerflow-job")
        try:
            with self._signals_stop():
                self._loop(until_idle)
        finally:
            self._stop.set()
            self._stop_all()
            self._pool.shutdown(wait=True)
            heartbeat.join()
            LOG.info("conductor %s stopped: %s", self.owner, dict(self.counts))

    def stop(self) -> None:
        """Suspend the flows in hand and hand their jobs back; ``run()`` then returns."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            works = list(self._active.values())
        for work in works:
            if work.engine is not None:
                work.engine.suspend()

    # ---- the loop ---------------------------------------------------------------------
    def _loop(self, until_idle: bool) -> None:
        while not self._stop.is_set():
            self._reap()
            if len(self._active) < self.workers:
                job = self._claim()
                if job is not None:
                    self._start(job)
                    continue
                if until_idle and self._idle_done():
                    return
            self._pause()

    def _claim(self) -> Job | None:
        try:
            if self._claim_unsure:
                self._recover_claims()
            job = self.board.claim(self.owner, self.lease)
            if job is None:
                # One look tells when to wake and whether a lapsed claim needs ending.
                self._idle = idle = self.board.idle()
                if idle.lapsed_at_max is None or idle.lapsed_at_max > 0:
                    self.board.fail_lapsed()
            self._storage_failures = 0
            return job
        except StorageError as error:
            self._storage_failures += 1
            self._claim_unsure = True
            LOG.warning("conductor %s cannot reach the board: %s", self.owner, error)
            self._stop.wait(self._backoff())
            return None

    def _recover_claims(self) -> None:
        """Hand back jobs claimed by a claim whose reply was lost (we hold them, unknowingly).

        Left alone they would lapse only after the lease, using up an attempt each.
        """
        with self._lock:
            in_hand = set(self._active)
        for job in self.board.jobs(state=CLAIMED):
            if job.owner == self.owner and job.uuid not in in_hand:
                LOG.warning(
                    "job %s: claimed while the board was unreachable; handed back", job.uuid
                )
                self.board.hand_back(job.uuid, self.owner, delay=0.0, refund=True)
        self._claim_unsure = False

    def _backoff(self) -> float:
        return float(min(_MAX_BACKOFF, self.poll * 2 ** min(self._storage_failures, 10)))

    def _pause(self) -> None:
        idle, self._idle = self._idle, None
        if len(self._active) >= self.workers:
            self._wake.wait(self.poll)
            self._wake.clear()
            return
        timeout = self.poll
        if idle is None:
            try:
                idle = self.board.idle()
            except StorageError:
                idle = None
        if idle is not None and idle.next_at is not None:
            from ledgerflow.models import utcnow

            until = (idle.next_at - utcnow()).total_seconds()
            timeout = max(0.0, min(timeout, until))
        if timeout > 0:
            self.board.wait_for_work(timeout)

    def _idle_done(self) -> bool:
        """Nothing READY, no lapsed claim, nothing of ours in hand; gone owners expired."""
        if self._active:
            return False
        try:
            idle = self.board.idle()
        except StorageError:
            return False
        gone = [(uuid, owner) for uuid, owner in idle.claimed if self._owner_gone(owner)]
        for uuid, owner in gone:
            self.board.expire(uuid, owner)
        return not gone and idle.ready == 0 and idle.lapsed == 0

    def _owner_gone(self, owner: str) -> bool:
        process = _process_of(owner)
        if process.rsplit(":", 2)[1:2] == [str(os.getpid())]:
            return False  # a conductor of this process: its lease decides
        return bool(identity.is_gone(process, ""))

    # ---- workers ----------------------------------------------------------------------
    def _start(self, job: Job) -> None:
        work = _Work(job)
        with self._lock:
            self._active[job.uuid] = work
        assert self._pool is not None
        self._pool.submit(self._work, work)

    def _reap(self) -> None:
        with self._lock:
            ended = [uuid for uuid, work in self._active.items() if work.done.is_set()]
            for uuid in ended:
                del self._active[uuid]

    def _stop_all(self) -> None:
        self.stop()
        while True:
            with self._lock:
                works = list(self._active.values())
            if not works:
                return
            for work in works:
                work.done.wait()
            self._reap()

    def _work(self, work: _Work) -> None:
        try:
            outcome = self._run_job(work)
            self._finish(work, *outcome)
        except Exception:
            LOG.exception("conductor %s: job %s broke the worker", self.owner, work.job.uuid)
            self._hand_back(work, delay=self._backoff())
        finally:
            work.done.set()
            self._wake.set()

    def _run_job(self, work: _Work) -> tuple[str | None, str | None]:
        """Run the job's flow; return (job state to end in or None to hand back, error)."""
        job = work.job
        try:
            engine, refusal = self._engine(job)
            if engine is None:
                return (None, None) if refusal is None else (FAILED, refusal)
            work.engine = engine
            if self._stop.is_set():
                work.engine.suspend()
            work.engine.run()
        except (FencedOut, FlowBusy) as error:
            LOG.warning("job %s: %s", job.uuid, error)
            work.lost = work.lost or isinstance(error, FencedOut)
            return None, None
        except StorageError as error:
            LOG.warning("job %s: storage failed, handing it back: %s", job.uuid, error)
            self._storage_failures += 1
            return None, None
        except FlowFailed:
            pass  # the persisted state tells the end
        except LedgerflowError as error:  # e.g. a version mismatch: running again cannot help
            return FAILED, f"{type(error).__name__}: {error}"
        except (ImportError, AttributeError, ValueError, TypeError) as error:
            return FAILED, f"cannot rebuild the flow: {type(error).__name__}: {error}"
        return self._persisted_end(job, work.engine)

    def _refusal(self, meta: dict[str, Any]) -> tuple[str | None, str]:
        """(why this conductor will not run the factory ``meta`` names or None, the factory)."""
        factory = meta.get("factory")
        if not isinstance(factory, str) or ":" not in factory:
            return "the job's flow detail names no factory 'package.module:function'", ""
        module = factory.partition(":")[0]
        if not _allowed(module, self.allow):
            return (
                f"factory {factory!r}: module {module!r} is not allowed on conductor "
                f"{self.name} (allow={list(self.allow or ())}); nothing was imported"
            ), factory
        return None, factory

    def _engine(self, job: Job) -> tuple[Any, str | None]:
        """(the engine resuming the job's flow, None) or (None, why not; None: stopping)."""
        from ledgerflow.engine.api import _connect, _materialize, _resume_engine, read_stored

        # The logbook schema is made ready once per conductor, not once per job.
        conn = self.board.backend.connect() if self._schema_ready else _connect(self.board.backend)
        self._schema_ready = True
        try:
            built = frozenset(self._built)  # built before this read (other workers add)
            try:  # one snapshot tells the factory and, once it was imported, serves the resume
                stored = read_stored(conn, job.flow_uuid, job.book_uuid)
            except NotFound:
                conn.close()
                return None, f"the job's flow detail {job.flow_uuid} is not in the logbook store"
            refusal, factory = self._refusal(stored.flow_detail.meta)
            if refusal is not None or self._stop.is_set():
                conn.close()
                return None, refusal
            flow, _, _ = _materialize(factory)
            if factory not in built:  # the read may have come before the import: read again
                stored = read_stored(conn, job.flow_uuid, job.book_uuid)
                self._built.add(factory)
            engine = _resume_engine(
                self.board.backend, conn, job.flow_uuid, flow, None, False, stored
            )
        except BaseException:
            conn.close()
            raise
        engine.lease = self.lease
        engine.wait = self.lease  # a stalled previous owner's flow lease runs out meanwhile
        if self.executor is not None:
            engine.use_executor(self.executor)
        return engine, None

    def _persisted_end(self, job: Job, engine: Any) -> tuple[str | None, str | None]:
        """The job's end as its flow's persisted state tells (None, None: hand it back)."""
        if engine is not None and engine.storage.committed:  # its copy is what is stored
            ended = flow_outcome(engine.flow_detail)
            if ended is not None:
                return ended
        try:
            with self.board.backend.connect() as conn:
                flow_detail = conn.get_flow_details(job.flow_uuid, lazy=True)
                if flow_detail.state in (states.FAILURE, states.REVERTED):  # tell which failed
                    flow_detail = conn.get_flow_details(job.flow_uuid)
        except StorageError:
            return None, None
        return flow_outcome(flow_detail) or (None, None)

    def _finish(self, work: _Work, state: str | None, error: str | None) -> None:
        job = work.job
        if work.lost:
            LOG.warning("job %s was taken over; this conductor leaves it", job.uuid)
            return
        if state is None:
            self._hand_back(work, delay=self._backoff() if self._storage_failures else 0.0)
            return
        ended = self._through_outage(
            f"record the end of job {job.uuid}",
            lambda: self.board.complete(job.uuid, self.owner, state, error),
            lambda seen: seen.state == state,
            job.uuid,
        )
        if ended is None:
            LOG.warning("job %s: cannot record its end; its claim will lapse", job.uuid)
            return
        if not ended:
            LOG.warning("job %s was taken over before it ended here", job.uuid)
            return
        self.counts[state] += 1
        LOG.info("job %s %s %s", job.uuid, job.name, state)
        if self.on_finish is not None:
            self.on_finish(job, state)

    def _hand_back(self, work: _Work, *, delay: float) -> None:
        uuid = work.job.uuid
        handed = self._through_outage(
            f"hand job {uuid} back",
            lambda: self.board.hand_back(uuid, self.owner, delay=delay, refund=True),
            lambda seen: seen.state == READY,
            uuid,
        )
        if handed is None:
            LOG.warning("job %s: cannot hand it back; its claim will lapse", uuid)
        elif handed:
            self.counts["handed back"] += 1

    def _through_outage(
        self, what: str, call: Callable[[], bool], landed: Callable[[Job], bool], uuid: str
    ) -> bool | None:
        """``call()`` retried through a board outage for one lease; None: it never got through.

        A try whose reply was lost may have committed: when a later try finds the claim
        no longer ours, the job as it stands tells whether the lost one landed.
        """
        deadline = time.monotonic() + self.lease
        delay, failed = _FIRST_RETRY, False
        while True:
            try:
                done = call()
                if done or not failed:
                    return done
                return landed(self.board.get(uuid))
            except StorageError as error:
                if not failed:
                    LOG.warning("conductor %s: cannot %s, retrying: %s", self.owner, what, error)
                failed = True
            if time.monotonic() + delay > deadline:
                return None
            time.sleep(delay)
            delay = min(delay * 2, _MAX_RETRY)

    # ---- claims' heartbeat ------------------------------------------------------------
    def _heartbeat(self) -> None:
        while not self._stop.wait(self.lease / 3):
            with self._lock:
                works = [w for w in self._active.values() if not w.done.is_set()]
            for work in works:
                try:
                    kept = self.board.renew(work.job.uuid, self.owner, self.lease)
                except StorageError:
                    continue  # the lease leaves time for the next beat
                if not kept:
                    work.lost = True
                    if work.engine is not None:
                        work.engine.suspend()

    @contextmanager
    def _signals_stop(self) -> Iterator[None]:
        """In the main thread, SIGTERM and Ctrl-C call ``stop()``."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_signal(signum: int, frame: object) -> None:
            LOG.warning("%s: conductor %s stopping", signal.strsignal(signum), self.owner)
            self.stop()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
