"""Storage: the one API the engine uses to read and record a flow's progress.

It owns the symbol table (which task gives which value to whom), checks every
state change against ``ledgerflow.states``, keeps the flow and task details in
memory and writes the changed ones with ``Connection.update_details`` according
to the save policy:

``"always"``   every ``sync()`` commits what changed (the engine syncs before it
               moves on, so one task's SUCCESS and the next one's RUNNING share
               one transaction);
``"batched"``  ``sync()`` commits once enough changes piled up or enough time passed;
``"final"``    only forced syncs commit (end of run, failure, suspend).

Checkpoints are written through whatever the policy.  Listeners hear of every
state change.
"""

from __future__ import annotations

import functools
import logging
import operator
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ledgerflow import serialization, states
from ledgerflow.errors import ConflictError, ProcessDied, StateTransitionError, StorageError
from ledgerflow.models import (
    Failure,
    FlowDetail,
    LogBook,
    TaskDetail,
    close_try,
    new_try,
    utcnow,
)
from ledgerflow.persistence import retry
from ledgerflow.persistence.base import Backend, Connection, Fence
from ledgerflow.persistence.ownership import OwnChange

if TYPE_CHECKING:
    from ledgerflow.engine.compile import Compiled
    from ledgerflow.task import Task

__all__ = ["SAVE_POLICIES", "StateChange", "Storage"]

LOG = logging.getLogger("ledgerflow.engine")
SAVE_POLICIES = ("always", "batched", "final")
#: "batched" commits once this many records changed or this many seconds passed.
BATCH_SIZE = 200
BATCH_SECONDS = 1.0
_STORE_PROVIDER = -1
#: Task meta key: tries in the current round of a task with a Retry.
TRIES_KEY = "tries"
#: Flow meta key: subflow name -> runs in the current round of a retrying subflow.
RETRY_RUNS_KEY = "retry_runs"
#: Fields ``start_task`` changes, kept so that ``unstart_task`` can put them back.
_START_FIELDS = (
    "state", "attempts", "started_at", "finished_at", "failure", "revert_failure", "meta", "tries",
)  # fmt: skip
_START_FIELDS_OF = operator.attrgetter(*_START_FIELDS)
_TASK_NEXT = states.TASK_TRANSITIONS


@dataclass(frozen=True)
class StateChange:
    """A flow or task changed state (what ``engine.on_change`` callbacks receive)."""

    kind: str  # "flow" or "task"
    name: str
    state: str
    flow_uuid: str
    task_uuid: str | None


class Storage:
    """A flow detail being run: its states, results, symbols and save policy."""

    def __init__(
        self,
        backend: Backend,
        book: LogBook,
        flow_detail: FlowDetail,
        *,
        save: str = "always",
        connection: Connection | None = None,
    ) -> None:
        if save not in SAVE_POLICIES:
            raise ValueError(f"save must be one of {', '.join(SAVE_POLICIES)}, not {save!r}")
        self.backend = backend
        self.book = book
        self.flow_detail = flow_detail
        self.save = save
        self._conn = connection if connection is not None else backend.connect()
        self._lock = threading.RLock()
        self._dirty: dict[str, FlowDetail | TaskDetail] = {}
        self._last_commit = time.monotonic()
        self._tasks: dict[str, TaskDetail] = {td.name: td for td in flow_detail}
        self._values: dict[str, dict[str, Any]] = {}
        self._bindings: dict[str, dict[str, tuple[str | None, str]]] = {}
        self._objects: dict[str, Task] = {}
        self._listeners: list[Callable[[StateChange], Any]] = []
        self._immediate: list[Callable[[StateChange], Any]] = []
        self._compiled: Compiled | None = None
        self.store: dict[str, Any] = dict(flow_detail.meta.get("store") or {})
        #: (flow uuid, fence) once the engine took the flow: every write checks it.
        self.fence: Fence | None = None
        #: The error of the last write of ours that failed (a task seeing it from a
        #: checkpoint did not fail: the store did, and the run stops without a revert).
        self.broken: BaseException | None = None
        #: Seconds a commit keeps retrying through a store outage before giving up.
        self.outage_window = retry.DEFAULT_WINDOW
        #: Under "always", state changes wait here until the commit that records them.
        self._unheard: list[StateChange] = []
        #: Task name -> its fields before the last ``start_task`` (see ``unstart_task``).
        self._before_start: dict[str, tuple[Any, ...]] = {}
        #: Task details added once the flow was taken: the next commit inserts them.
        self._unstored: dict[str, TaskDetail] = {}
        #: The release the commit that ends the flow carries, and what must happen just
        #: before it (the lease stops renewing): see ``release_at_end``.
        self._release: tuple[OwnChange, Callable[[], None]] | None = None
        #: The flow moved to an ended state that no commit has written yet.
        self._ending = False
        #: Whether the commit that ended the flow let go of it (the engine need not).
        self.released = False

    # ---- symbols ---------------------------------------------------------------
    def bind(self, compiled: Compiled) -> None:
        """Adopt the symbol table of ``compiled`` and rebuild values of finished tasks."""
        self._compiled = compiled
        names = [node.name for node in compiled.nodes]
        for node in compiled.nodes:
            self._objects[node.name] = node.task
            self._bindings[node.name] = {
                param: (None if provider == _STORE_PROVIDER else names[provider], symbol)
                for param, (provider, symbol) in node.bindings.items()
            }
        for name, detail in self._tasks.items():
            if detail.state in (states.SUCCESS, states.REVERTING, states.REVERT_FAILURE):
                task = self._objects.get(name)
                if task is not None and detail.failure is None:
                    self._values[name] = task.extract(detail.result)

    def reload(self) -> None:
        """Replace what this storage holds with the flow as stored now (same objects)."""
        fresh = self._conn.get_flow_details(self.flow_detail.uuid)
        with self._lock:
            ownership = (self.flow_detail.owner, self.flow_detail.fence)
            self.flow_detail.merge(fresh, deep=True)
            self.flow_detail.owner, self.flow_detail.fence = ownership
            self._tasks = {td.name: td for td in self.flow_detail}
            self._dirty.clear()
            self._unstored.clear()
            self._ending = False
            self._values.clear()
            self.store = dict(self.flow_detail.meta.get("store") or {})
        if self._compiled is not None:
            self.bind(self._compiled)

    def fetch_args(self, name: str) -> dict[str, Any]:
        """Return the keyword arguments of task ``name``'s execute()."""
        args: dict[str, Any] = {}
        for param, (provider, symbol) in self._bindings[name].items():
            source = self.store if provider is None else self._values.get(provider)
            if source is not None and symbol in source:
                args[param] = source[symbol]
        return args

    def fetch(self, symbol: str) -> Any:
        """Return the latest value of ``symbol`` provided by a task, else from the store."""
        for values in reversed(list(self._values.values())):
            if symbol in values:
                return values[symbol]
        if symbol in self.store:
            return self.store[symbol]
        raise KeyError(f"no task or store value provides {symbol!r}")

    def results(self) -> dict[str, Any]:
        """Every symbol a finished task provided, mapped to its value."""
        out: dict[str, Any] = {}
        for name in self._tasks:
            values = self._values.get(name)
            if values and self._tasks[name].state == states.SUCCESS:
                out.update(values)
        return out

    # ---- reading ---------------------------------------------------------------
    def task_detail(self, name: str) -> TaskDetail:
        """The live task detail of task ``name``."""
        return self._tasks[name]

    def task_state(self, name: str) -> str:
        """The current state of task ``name``."""
        return self._tasks[name].state

    @property
    def flow_state(self) -> str:
        """The current state of the flow."""
        return self.flow_detail.state

    def failures(self) -> dict[str, Failure]:
        """Task name -> Failure of every task that ended in FAILURE."""
        return {n: td.failure for n, td in self._tasks.items() if td.failure is not None}

    # ---- listeners -------------------------------------------------------------
    def add_listener(
        self, callback: Callable[[StateChange], Any], *, immediate: bool = False
    ) -> None:
        """Call ``callback(event)`` on every flow and task state change.

        Under "always" it hears of a change once committed; ``immediate`` listeners (the
        engine's own logs and spans, which time the change itself) hear of it at once.
        """
        (self._immediate if immediate else self._listeners).append(callback)

    def remove_listener(self, callback: Callable[[StateChange], Any]) -> None:
        """Stop calling ``callback`` (no error if it was not registered)."""
        for listeners in (self._listeners, self._immediate):
            if callback in listeners:
                listeners.remove(callback)

    def _emit(self, kind: str, name: str, state: str, task_uuid: str | None) -> None:
        if not self._listeners and not self._immediate:
            return
        event = StateChange(kind, name, state, self.flow_detail.uuid, task_uuid)
        self._tell(event, self._immediate)
        if self.save == "always":  # heard once committed (see _write)
            with self._lock:
                self._unheard.append(event)
            return
        self._tell(event, self._listeners)

    def _flush_events(self) -> None:
        with self._lock:
            events, self._unheard = self._unheard, []
        for event in events:
            self._tell(event, self._listeners)

    def _tell(self, event: StateChange, listeners: list[Callable[[StateChange], Any]]) -> None:
        for callback in list(listeners):
            try:
                callback(event)
            except Exception:
                LOG.exception("state-change listener %r raised; ignored", callback)

    # ---- recording -------------------------------------------------------------
    def set_flow_state(self, state: str) -> None:
        """Move the flow to ``state`` (checked)."""
        with self._lock:
            flow = self.flow_detail
            if state not in states.FLOW_TRANSITIONS.get(flow.state, ()):
                _check(
                    states.check_flow_transition, flow.state, state, "flow detail", flow.name, flow
                )
            flow.state = state
            flow.updated_at = utcnow()
            self._dirty[flow.uuid] = flow
            self._ending = state in states.ENDED
        self._emit("flow", flow.name, state, None)

    def _set_task_state(self, name: str, state: str, **fields: Any) -> TaskDetail:
        with self._lock:
            detail = self._tasks[name]
            # The table lookup settles the usual case; the full check explains a refusal.
            if state not in _TASK_NEXT.get(detail.state, ()):
                _check(
                    states.check_task_transition, detail.state, state, "task detail", name, detail
                )
            fields["state"] = state
            if "updated_at" not in fields:  # callers that read the clock already pass theirs
                fields["updated_at"] = utcnow()
            # TaskDetail is a plain dataclass: one dict update sets every field at once.
            detail.__dict__.update(fields)
            self._dirty[detail.uuid] = detail
        if self._listeners or self._immediate:
            self._emit("task", name, state, detail.uuid)
        return detail

    def start_task(self, name: str, tries: int | None = None) -> TaskDetail:
        """Record that task ``name``'s execute() starts (RUNNING, one more attempt and try).

        ``tries`` (for a task with a Retry) is the try this is in the current round; it
        is stored so that a resumed flow spends the rest of the budget, not a new one.
        """
        now = utcnow()
        detail = self._tasks[name]
        self._before_start[name] = _START_FIELDS_OF(detail)
        fields: dict[str, Any] = {}
        if tries is not None:
            fields["meta"] = {**detail.meta, TRIES_KEY: tries}
        attempt = detail.attempts + 1
        return self._set_task_state(
            name,
            states.RUNNING,
            attempts=attempt,
            tries=[*detail.tries, new_try(attempt, now)],
            started_at=now,
            updated_at=now,
            finished_at=None,
            failure=None,
            revert_failure=None,
            **fields,
        )

    def unstart_task(self, name: str) -> None:
        """Undo ``start_task`` of a task that did not start after all (a suspend came first)."""
        before = self._before_start.pop(name)
        with self._lock:
            detail = self._tasks[name]
            for key, value in zip(_START_FIELDS, before, strict=True):
                setattr(detail, key, value)
            detail.updated_at = utcnow()
            self._dirty[detail.uuid] = detail
        self._emit("task", name, detail.state, detail.uuid)

    def tries(self, name: str) -> int:
        """Tries task ``name`` made in its current round (stored by ``start_task``)."""
        return int(self._tasks[name].meta.get(TRIES_KEY, 0))

    def retry_runs(self) -> dict[str, int]:
        """How many times each retrying subflow (by name) has run in this round."""
        return dict(self.flow_detail.meta.get(RETRY_RUNS_KEY) or {})

    def set_retry_runs(self, runs: dict[str, int]) -> None:
        """Record the subflow run counts (committed with the next sync)."""
        with self._lock:
            flow = self.flow_detail
            flow.meta = {**flow.meta, RETRY_RUNS_KEY: dict(runs)}
            flow.updated_at = utcnow()
            self._dirty[flow.uuid] = flow

    def set_flow_meta(self, key: str, value: Any) -> None:
        """Record ``value`` under ``key`` in the flow's meta (committed with the next sync)."""
        with self._lock:
            flow = self.flow_detail
            flow.meta = {**flow.meta, key: value}
            self._dirty[flow.uuid] = flow

    def task_succeeded(self, name: str, result: Any) -> None:
        """Record ``result``; SerializationError/ValueError (nothing changed) if unusable."""
        text = serialization.dumps(result, lambda: f"result of task {name!r}")
        task = self._objects.get(name)
        values = task.extract(result) if task is not None else {}
        now = utcnow()
        tries = close_try(self._tasks[name].tries, states.SUCCESS, now)
        detail = self._set_task_state(
            name, states.SUCCESS, result=result, finished_at=now, updated_at=now, tries=tries
        )
        detail.remember_encoding("result", result, text)  # the write encodes nothing again
        self._values[name] = values

    def task_failed(self, name: str, failure: Failure, *, retrying: bool = False) -> None:
        """Record a failed try: FAILURE, or RETRYING when another try follows."""
        state = states.RETRYING if retrying else states.FAILURE
        now = utcnow()
        tries = close_try(self._tasks[name].tries, states.FAILURE, now, failure)
        self._set_task_state(
            name,
            state,
            result=None,
            failure=failure,
            finished_at=now,
            updated_at=now,
            tries=tries,
        )
        self._values.pop(name, None)

    def close_dead_tries(self) -> list[str]:
        """End as FAILURE every try still RUNNING: no engine runs it (call before running).

        Its process died inside it (or stopped recording); the change is committed with
        the next sync.  Returns the names of the tasks whose try was closed.
        """
        closed = []
        with self._lock:
            for name, detail in self._tasks.items():
                if not detail.tries or detail.tries[-1].get("state") != states.RUNNING:
                    continue
                attempt = detail.tries[-1].get("attempt")
                failure = Failure.from_exception(
                    ProcessDied(
                        f"the process running try {attempt} of task {name!r} died before the "
                        "try ended (found still RUNNING when the flow was resumed)"
                    )
                )
                detail.tries = close_try(detail.tries, states.FAILURE, utcnow(), failure)
                detail.updated_at = utcnow()
                self._dirty[detail.uuid] = detail
                closed.append(name)
        return closed

    def revert_started(self, name: str) -> None:
        """Record that task ``name``'s revert starts."""
        self._set_task_state(name, states.REVERTING)

    def task_reverted(self, name: str, revert_failure: Failure | None = None) -> None:
        """Record the end of a revert: REVERTED, or REVERT_FAILURE with its failure."""
        if revert_failure is None:  # an earlier revert's failure no longer describes it
            self._set_task_state(name, states.REVERTED, finished_at=utcnow(), revert_failure=None)
        else:
            self._set_task_state(
                name, states.REVERT_FAILURE, revert_failure=revert_failure, finished_at=utcnow()
            )
        self._values.pop(name, None)

    def reset_task(self, name: str) -> None:
        """Put task ``name`` back to PENDING so it runs again (attempts keep counting).

        The checkpoint goes too: a reset follows a revert, which undid the work the
        checkpoint described, so the next ``last_checkpoint`` must be None.
        """
        meta = self._tasks[name].meta
        if TRIES_KEY in meta:  # a new round: the Retry budget starts again
            meta = {key: value for key, value in meta.items() if key != TRIES_KEY}
        self._set_task_state(name, states.PENDING, checkpoint=None, meta=meta)
        self._values.pop(name, None)

    def task_interrupted(self, name: str) -> None:
        """Put task ``name`` back to PENDING after it raised Interrupted, keeping its checkpoint."""
        detail = self._tasks[name]
        meta = detail.meta
        if TRIES_KEY in meta:  # the interrupted try spends no attempt of its Retry
            meta = {**meta, TRIES_KEY: max(0, int(meta[TRIES_KEY]) - 1)}
        now = utcnow()
        tries = close_try(detail.tries, states.INTERRUPTED, now)
        self._set_task_state(name, states.PENDING, meta=meta, finished_at=now, tries=tries)
        self._values.pop(name, None)

    def interrupted(self, name: str) -> bool:
        """Whether task ``name`` is PENDING after a try it stopped with Interrupted (it ran)."""
        detail = self._tasks[name]
        return (
            detail.state == states.PENDING
            and bool(detail.tries)
            and detail.tries[-1].get("state") == states.INTERRUPTED
        )

    def revert_result(self, name: str) -> Any:
        """What ``revert`` receives as ``result``: the stored result, or the Failure."""
        detail = self._tasks[name]
        return detail.failure if detail.failure is not None else detail.result

    def checkpoint(self, name: str, value: Any) -> None:
        """Save ``value`` as task ``name``'s checkpoint, committed before returning."""
        text = serialization.dumps(value, f"checkpoint of task {name!r}")
        with self._lock:
            detail = self._tasks[name]
            detail.checkpoint = value
            detail.remember_encoding("checkpoint", value, text)
            detail.updated_at = utcnow()
            self._dirty.pop(detail.uuid, None)
            self._commit([detail])

    def last_checkpoint(self, name: str) -> Any:
        """The checkpoint task ``name`` saved last, or None."""
        return self._tasks[name].checkpoint

    # ---- committing ------------------------------------------------------------
    def sync(self, *, force: bool = False) -> None:
        """Commit pending changes if the save policy (or ``force``) says so."""
        with self._lock:
            if not self._dirty:
                return
            if not force:
                if self.save == "final":
                    return
                if self.save == "batched" and (
                    len(self._dirty) < BATCH_SIZE
                    and time.monotonic() - self._last_commit < BATCH_SECONDS
                ):
                    return
            self._commit(list(self._dirty.values()))
            self._dirty.clear()
            self._last_commit = time.monotonic()

    def add_task_details(self, details: list[TaskDetail]) -> None:
        """Add new task details (tasks added to the flow since it was saved).

        Once the flow is taken they are stored by the next commit, with the flow (no
        commit of their own); before that, at once.
        """
        with self._lock:
            for detail in details:
                self.flow_detail.add(detail)
                self._tasks[detail.name] = detail
            if self.fence is not None:
                self._unstored.update((detail.uuid, detail) for detail in details)
                self._dirty[self.flow_detail.uuid] = self.flow_detail
                return
            self._dirty.pop(self.flow_detail.uuid, None)
            self._write(self._conn.update_flow_details, self.flow_detail)

    def release_at_end(self, change: OwnChange, before: Callable[[], None]) -> None:
        """Let the commit that writes the flow's end apply ``change`` (a release) as well.

        ``before()`` runs just before that commit (the engine stops renewing its lease,
        so no renewal can follow the release).  ``released`` tells whether it happened.
        """
        with self._lock:
            self._release = (change, before)
            self.released = False

    @property
    def committed(self) -> bool:
        """Whether the store holds all this storage holds (nothing pending, no write failed)."""
        return not self._dirty and not self._unstored and self.broken is None

    def _commit(self, details: list[FlowDetail | TaskDetail]) -> None:
        """Commit ``details`` in one transaction, under this run's fence.

        Task details added since the take go in with the flow (its fenced write vouches
        for them); the commit that writes the flow's end lets go of the flow as well.
        """
        flow = self.flow_detail
        ends = self._ending and self._release is not None
        if self.fence is None or not (self._unstored or ends):
            self._write(self._conn.update_details, *details)
            return
        if self._unstored and not any(detail is flow for detail in details):
            details = [*details, flow]
            self._dirty.pop(flow.uuid, None)
        stored = [detail for detail in details if detail.uuid not in self._unstored]
        writes_flow = any(detail is flow for detail in stored)
        release = None
        if ends and writes_flow and self._release is not None:
            release, before = self._release
            before()
        new = list(self._unstored.values())
        self._write(functools.partial(self._conn.commit_details, new=new, release=release), *stored)
        self._unstored.clear()
        if writes_flow:
            self._ending = False
        if release is not None:
            self.released = True

    @property
    def connection(self) -> Connection:
        """The connection this storage commits on."""
        return self._conn

    def _write(self, write: Callable[..., Any], *details: Any) -> None:
        """Commit through ``write`` under this run's fence, riding out outages (``retry``).

        A failure that outlasts them marks this storage broken, so that a task which
        saw it from a checkpoint does not count as failed.  Under "always", listeners
        hear of the changes now committed.
        """
        try:
            retry.commit(self._conn, write, details, self.fence, self.outage_window)
        except (StorageError, ConflictError) as exc:
            self.broken = exc
            raise
        if self._unheard:
            self._flush_events()

    def close(self) -> None:
        """Release the connection (the backend stays open)."""
        self._conn.close()

    def __repr__(self) -> str:
        return f"<Storage flow={self.flow_detail.name!r} {self.flow_detail.uuid} save={self.save}>"


def _check(
    check: Callable[[str, str], None], old: str, new: str, kind: str, name: str, record: Any
) -> None:
    """``check(old, new)``, its StateTransitionError naming the record (its state may be bad)."""
    try:
        check(old, new)
    except StateTransitionError as exc:
        raise StateTransitionError(f"{kind} {name!r} ({record.uuid}): {exc}") from None
