"""``JobBoard``: the contract every board keeps, and what all boards share.

A board stores jobs; each job names a logbook with one flow detail (its factory and
store in the detail's meta) in the board's logbook backend.  ``post``/``get``/
``jobs``/``wait``/``cancel``/``retry`` are the user's side; ``claim``/``renew``/
``complete``/``hand_back``/``expire`` are the conductor's, each a compare-and-set on
the job's state and owner, so a conductor whose claim was taken over changes nothing.
A subclass provides the storage primitives (the abstract methods) and nothing else.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from ledgerflow import states
from ledgerflow.errors import NotFound
from ledgerflow.jobs.model import (
    CANCELLED,
    CLAIMED,
    DONE,
    ENDED,
    FAILED,
    JOB_STATES,
    READY,
    Job,
    PostRequest,
    check_post,
)
from ledgerflow.models import FlowDetail, LogBook, new_uuid, utcnow
from ledgerflow.persistence.base import Backend

__all__ = ["FLOW_ENDS", "Idle", "JobBoard", "Later", "flow_outcome"]

#: How often ``wait`` looks again when no wake-up arrives.
_WAIT_POLL: Final = 0.05


@dataclass(frozen=True)
class Idle:
    """What a conductor with nothing to claim needs to know to wait or to stop."""

    #: Jobs READY now or later (delayed ones included).
    ready: int
    #: Claims whose lease ran out (another conductor may take them).
    lapsed: int
    #: The earliest ``available_at`` among READY jobs, or None.
    next_at: datetime | None
    #: (job uuid, owner) of every job CLAIMED right now.
    claimed: tuple[tuple[str, str], ...]
    #: Of the lapsed claims, those at max_attempts (``fail_lapsed`` ends them); None: a
    #: board that does not count them, so ``fail_lapsed`` has to look.
    lapsed_at_max: int | None = None


@dataclass(frozen=True)
class Later:
    """``seconds`` after now on the board's clock: the server's where there is a server.

    Claims and leases are timed on one clock, so a conductor whose host clock is off
    cannot shorten (or stretch) a claim; only a memory or SQLite board (one host) uses
    this process's clock.
    """

    seconds: float

    def after(self, now: datetime) -> datetime:
        """The moment ``seconds`` after ``now``."""
        return now + timedelta(seconds=self.seconds)


#: The job state each terminal flow state makes.
FLOW_ENDS: Final = {
    states.SUCCESS: DONE,
    states.REVERTED: FAILED,
    states.FAILURE: FAILED,
    states.CANCELLED: CANCELLED,
}


def flow_outcome(flow_detail: FlowDetail) -> tuple[str, str | None] | None:
    """(job state, last_error) for a flow at its persisted end; None if it has not ended."""
    end = FLOW_ENDS.get(flow_detail.state)
    if end is None:
        return None
    if end != FAILED:
        return end, None
    failures = [
        f"{td.name}: {td.failure.exc_type_names[0]}: {td.failure.message}"
        for td in flow_detail
        if td.failure is not None
    ]
    return end, f"flow ended {flow_detail.state}; " + ("; ".join(failures) or "no task failed")


def key_held(job_uuid: str) -> str:
    """Why a job cannot be READY again: its key is held by another unfinished job."""
    return f"job {job_uuid} cannot be READY again: another unfinished job holds its key"


def _check_state(state: str | None) -> None:
    if state is not None and state not in JOB_STATES:
        raise ValueError(f"job state must be one of {', '.join(JOB_STATES)}, not {state!r}")


def _check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative integer or None, not {limit!r}")


class JobBoard(abc.ABC):
    """Where jobs are posted, found and claimed; see the module docstring."""

    #: URI schemes this board serves.
    schemes: tuple[str, ...] = ()

    def __init__(self, backend: Backend, *, owns_backend: bool) -> None:
        self.backend = backend
        self._owns_backend = owns_backend
        self._closed = False
        from ledgerflow.jobs.guard import register

        register(self)

    # ---- the user's side -----------------------------------------------------------
    def post(
        self,
        factory: str | Callable[..., Any],
        *,
        store: Mapping[str, Any] | None = None,
        name: str | None = None,
        priority: int = 0,
        delay: float = 0.0,
        key: str | None = None,
        max_attempts: int = 3,
        engine: str = "serial",
        save: str = "always",
    ) -> Job:
        """Create the job's logbook (one flow detail with factory and store) and the job."""
        request = check_post(
            factory,
            store=store,
            name=name,
            priority=priority,
            delay=delay,
            key=key,
            max_attempts=max_attempts,
            engine=engine,
            save=save,
        )
        if request.key is not None:
            existing = self._find_key(request.key)
            if existing is not None:
                return existing
        book, job = self._new_records(request)
        return self._post(book, job)

    def get(self, job_uuid: str) -> Job:
        """The job with this uuid; NotFound if there is none."""
        if not isinstance(job_uuid, str):
            raise TypeError(f"job uuid must be a string, not {type(job_uuid).__name__}")
        job = self._get(job_uuid)
        if job is None:
            raise NotFound(f"no job with uuid {job_uuid!r}")
        return job

    def jobs(self, *, state: str | None = None, limit: int | None = None) -> list[Job]:
        """Jobs newest first, optionally only those in ``state``, at most ``limit``."""
        _check_state(state)
        _check_limit(limit)
        return self._list(state, limit)

    def wait(self, job_uuid: str, timeout: float | None = None) -> Job:
        """Block until the job is DONE, FAILED or CANCELLED; TimeoutError past ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(job_uuid)
            if job.state in ENDED:
                return job
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"job {job_uuid} is still {job.state} after {timeout} s")
            time.sleep(_WAIT_POLL if left is None else max(0.0, min(_WAIT_POLL, left)))

    def cancel(self, job_uuid: str) -> Job:
        """READY: CANCELLED now; CLAIMED: request the flow's cancel; return the job."""
        job = self.get(job_uuid)
        if job.state == READY:
            if self._change(job_uuid, (READY,), None, {"state": CANCELLED, "owner": None}):
                return self.get(job_uuid)
            job = self.get(job_uuid)
        if job.state == CLAIMED:
            self._request_cancel(job.flow_uuid)
        return job

    def retry(self, job_uuid: str) -> Job:
        """FAILED or CANCELLED -> READY with attempts reset and the flow reset to its start."""
        job = self.get(job_uuid)
        if job.state not in (FAILED, CANCELLED):
            raise ValueError(
                f"job {job_uuid} is {job.state}: only a FAILED or CANCELLED job can be retried"
            )
        if job.key is not None:  # refused before the flow is touched (the change checks too)
            held = self._find_key(job.key)
            if held is not None and held.uuid != job_uuid:
                raise ValueError(key_held(job_uuid))
        self._reset_flow(job.flow_uuid)
        changes = {
            "state": READY,
            "attempts": 0,
            "owner": None,
            "last_error": None,
            "available_at": Later(0.0),
        }
        if not self._change(job_uuid, (FAILED, CANCELLED), None, changes):
            raise ValueError(f"job {job_uuid} changed state meanwhile; it was not retried")
        self._notify()
        return self.get(job_uuid)

    def close(self) -> None:
        """Release the board's connections (and its backend, if the board opened it)."""
        if self._closed:
            return
        self._closed = True
        self._close()
        if self._owns_backend:
            self.backend.close()

    def __enter__(self) -> JobBoard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the conductor's side ------------------------------------------------------
    @abc.abstractmethod
    def claim(self, owner: str, lease: float) -> Job | None:
        """Claim the best job available now (priority, then age): READY, or a lapsed claim."""

    def renew(self, job_uuid: str, owner: str, lease: float) -> bool:
        """Extend ``owner``'s claim by ``lease`` seconds; False if it is not theirs any more."""
        return self._change(job_uuid, (CLAIMED,), owner, {"claim_expires_at": Later(lease)})

    def complete(self, job_uuid: str, owner: str, state: str, last_error: str | None) -> bool:
        """End ``owner``'s claim DONE, FAILED or CANCELLED; False if it is not theirs."""
        if state not in ENDED:
            raise ValueError(f"a job ends DONE, FAILED or CANCELLED, not {state!r}")
        changes = {"state": state, "last_error": last_error, "owner": None}
        return self._change(job_uuid, (CLAIMED,), owner, changes)

    def hand_back(self, job_uuid: str, owner: str, *, delay: float, refund: bool) -> bool:
        """Make ``owner``'s job READY again after ``delay``; ``refund`` gives its claim back."""
        changes: dict[str, Any] = {
            "state": READY,
            "owner": None,
            "available_at": Later(delay),
        }
        if refund:
            changes["attempts"] = -1  # relative: see _change
        done = self._change(job_uuid, (CLAIMED,), owner, changes)
        if done:
            self._notify()
        return done

    def expire(self, job_uuid: str, owner: str) -> bool:
        """End ``owner``'s lease on the job now (its process is known gone)."""
        return self._change(job_uuid, (CLAIMED,), owner, {"claim_expires_at": Later(0.0)})

    def fail_lapsed(self) -> int:
        """End claims that lapsed at max_attempts (FAILED, unless the flow ended); how many.

        The flow's persisted state decides first: a flow that reached its end before
        its conductor could say so (the board was unreachable, the conductor died) ends
        its job as the conductor would have, so a board outage never fails a job whose
        flow succeeded.
        """
        count = 0
        for job_uuid, owner, attempts in self._lapsed_at_max():
            job = self._get(job_uuid)
            if job is None:
                continue
            ended = self._flow_end(job.flow_uuid)
            if ended is None:
                ended = (
                    FAILED,
                    f"claimed {attempts} times (max_attempts) without finishing; the last "
                    f"claim ({owner}) lapsed",
                )
            changes = {"state": ended[0], "owner": None, "last_error": ended[1]}
            count += self._change(job_uuid, (CLAIMED,), owner, changes)
        return count

    def _flow_end(self, flow_uuid: str) -> tuple[str, str | None] | None:
        """(job state, last_error) the flow's persisted end calls for; None if not ended."""
        with self.backend.connect() as conn:
            try:
                flow_detail = conn.get_flow_details(flow_uuid)
            except NotFound:
                return None
        return flow_outcome(flow_detail)

    @abc.abstractmethod
    def idle(self) -> Idle:
        """What is left to claim, now or later (see ``Idle``)."""

    def wait_for_work(self, timeout: float) -> None:
        """Sleep up to ``timeout`` s, less if the board can tell that work arrived."""
        time.sleep(max(0.0, timeout))

    # ---- shared helpers ------------------------------------------------------------
    def _new_records(self, request: PostRequest) -> tuple[LogBook, Job]:
        now = utcnow()
        book = LogBook(request.name)
        flow_detail = FlowDetail(request.name, meta=request.flow_meta())
        book.add(flow_detail)
        job = Job(
            uuid=new_uuid(),
            name=request.name,
            state=READY,
            book_uuid=book.uuid,
            flow_uuid=flow_detail.uuid,
            priority=request.priority,
            key=request.key,
            attempts=0,
            max_attempts=request.max_attempts,
            owner=None,
            created_at=now,
            available_at=now + timedelta(seconds=request.delay),
            last_error=None,
        )
        return book, job

    def _request_cancel(self, flow_uuid: str) -> None:
        """Store a cancel request on the flow: its owner (now or next) reverts it."""
        from ledgerflow.persistence.ownership import OwnChange

        with self.backend.connect() as conn:
            conn.change_ownership(flow_uuid, OwnChange("request", request="cancel"))

    def _reset_flow(self, flow_uuid: str) -> None:
        """Put the flow and its tasks back to PENDING so that it runs from the start."""
        from ledgerflow.persistence.ownership import OwnChange

        with self.backend.connect() as conn:
            seen = conn.get_ownership(flow_uuid)
            if seen.request is not None:  # a cancel kept on the row would end the new run
                conn.change_ownership(
                    flow_uuid, OwnChange("release", fence=seen.fence, clear_cancel=True)
                )
            flow_detail = conn.get_flow_details(flow_uuid)
            flow_detail.state = states.PENDING
            for task_detail in flow_detail:
                task_detail.state = states.PENDING
                task_detail.result = None
                task_detail.failure = None
                task_detail.revert_failure = None
                task_detail.checkpoint = None
            conn.update_flow_details(flow_detail)
            for task_detail in flow_detail:
                conn.update_task_details(task_detail)

    # ---- what a board stores (subclasses) --------------------------------------------
    @abc.abstractmethod
    def _post(self, book: LogBook, job: Job) -> Job:
        """Store the book and the job (atomically where they share a database).

        With a key, return the READY or CLAIMED job already holding it instead.
        """

    @abc.abstractmethod
    def _find_key(self, key: str) -> Job | None:
        """The READY or CLAIMED job with this key, if any."""

    @abc.abstractmethod
    def _get(self, job_uuid: str) -> Job | None:
        """The job, or None."""

    @abc.abstractmethod
    def _list(self, state: str | None, limit: int | None) -> list[Job]:
        """Jobs newest first (posting order), filtered by state, at most ``limit``."""

    @abc.abstractmethod
    def _change(
        self,
        job_uuid: str,
        from_states: tuple[str, ...],
        owner: str | None,
        changes: dict[str, Any],
    ) -> bool:
        """Apply ``changes`` if the job is in ``from_states`` (and owned by ``owner``).

        ``attempts: -1`` means one less; a ``Later`` value is a time on the board's
        clock; an ended state clears the key's hold.
        """

    @abc.abstractmethod
    def _lapsed_at_max(self) -> list[tuple[str, str, int]]:
        """(uuid, owner, attempts) of claims that lapsed with attempts >= max_attempts."""

    @abc.abstractmethod
    def clear_all(self) -> None:
        """Delete every job of this board (its logbooks stay); for tests and resets."""

    def _notify(self) -> None:
        """Wake idle conductors (boards that can)."""

    def _close(self) -> None:
        """Release what the board holds beside its backend."""


__all__ += ["CANCELLED", "CLAIMED", "DONE", "FAILED", "READY"]
