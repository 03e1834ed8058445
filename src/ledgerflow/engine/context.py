"""``current_task()``: what a running execute()/revert() can ask about itself."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ledgerflow.engine import observe
from ledgerflow.errors import TaskTimeout
from ledgerflow.storage import Storage

if TYPE_CHECKING:
    from ledgerflow.task import Task

__all__ = ["TaskContext", "call_with_timeout", "current_task"]

_CURRENT: contextvars.ContextVar[TaskContext] = contextvars.ContextVar("ledgerflow_current_task")


class TaskContext:
    """The task being run: its name, attempt, last checkpoint, and checkpointing."""

    def __init__(self, storage: Storage, name: str, stop: threading.Event | None = None) -> None:
        self._storage = storage
        self._stop = stop if stop is not None else threading.Event()
        #: True once the try ran past its timeout: it is abandoned, its checkpoints dropped.
        self.abandoned = False
        self.name = name
        detail = storage.task_detail(name)
        self.task_uuid = detail.uuid
        self.attempt = detail.attempts
        self._last = detail.checkpoint
        #: The OpenTelemetry context of this try's span, made current while it runs.
        self.trace_context = observe.span_context(storage, name)

    @property
    def last_checkpoint(self) -> Any:
        """The value saved by the last ``checkpoint()`` (an earlier try or process), or None."""
        return self._last

    @property
    def stop_requested(self) -> bool:
        """True once a suspend, cancel or timeout asks the task to stop early."""
        return self.abandoned or self._stop.is_set()

    def abandon(self) -> None:
        """Give up on this try (its timeout passed): it sees stop_requested, saves nothing."""
        self.abandoned = True

    def checkpoint(self, value: Any) -> None:
        """Persist ``value`` to the task detail; returns once it is committed."""
        if self.abandoned:  # a try past its timeout: what it saves is dropped
            return
        self._storage.checkpoint(self.name, value)
        self._last = value

    async def acheckpoint(self, value: Any) -> None:
        """``checkpoint`` for async tasks: the write runs in a thread, the loop goes on."""
        await asyncio.to_thread(self.checkpoint, value)

    def __repr__(self) -> str:
        return f"<TaskContext {self.name!r} attempt={self.attempt}>"


def current_task() -> TaskContext:
    """Return the context of the task whose execute()/revert() is running; LookupError outside."""
    try:
        return _CURRENT.get()
    except LookupError:
        raise LookupError(
            "current_task() is only available inside a task's execute() or revert()"
        ) from None


class bind_context:
    """Make ``context`` the current task (and its trace context current) inside the block.

    A class, not a generator: it wraps every try, and a generator context costs more.
    """

    __slots__ = ("_context", "_token", "_trace_token")

    def __init__(self, context: TaskContext) -> None:
        self._context = context

    def __enter__(self) -> None:
        self._token = _CURRENT.set(self._context)
        self._trace_token = observe.enter(self._context.trace_context)

    def __exit__(self, *_: object) -> None:
        observe.leave(self._trace_token)
        _CURRENT.reset(self._token)


def call_in_context(context: TaskContext, func: Any, *args: Any) -> Any:
    """Call ``func(*args)`` with ``context`` as the current task."""
    with bind_context(context):
        return func(*args)


def call_with_timeout(
    timeout: float, name: str, abandon: Callable[[], None] | None, func: Any, *args: Any
) -> Any:
    """Call ``func(*args)`` in a thread of its own; TaskTimeout once ``timeout`` passed.

    The late call is abandoned, not stopped (Python cannot stop a thread): ``abandon``
    is called, so it sees ``stop_requested`` and its checkpoints are dropped, and its
    result, whenever it comes, is never read.
    """
    outcome: dict[str, Any] = {}
    done = threading.Event()
    context = contextvars.copy_context()  # the current task travels to the thread

    def target() -> None:
        try:
            outcome["result"] = context.run(func, *args)
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, name=f"ledgerflow-task-{name}", daemon=True).start()
    if not done.wait(timeout):
        if abandon is not None:
            abandon()
        raise TaskTimeout(f"task {name!r} ran past its timeout of {timeout:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def execute_in_context(context: TaskContext, task: Task, inputs: Mapping[str, Any]) -> Any:
    """Run ``task.execute`` with ``context`` as the current task, under its timeout if any."""
    if task.timeout is None:
        return call_in_context(context, task.call_execute, inputs)
    return call_in_context(
        context,
        call_with_timeout,
        task.timeout,
        task.name,
        context.abandon,
        task.call_execute,
        inputs,
    )
