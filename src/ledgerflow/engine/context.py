"""``current_task()``: what a running execute()/revert() can ask about itself."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

from ledgerflow.engine import observe
from ledgerflow.storage import Storage

__all__ = ["TaskContext", "current_task"]

_CURRENT: contextvars.ContextVar[TaskContext] = contextvars.ContextVar("ledgerflow_current_task")


class TaskContext:
    """The task being run: its name, attempt, last checkpoint, and checkpointing."""

    def __init__(self, storage: Storage, name: str) -> None:
        self._storage = storage
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

    def checkpoint(self, value: Any) -> None:
        """Persist ``value`` to the task detail; returns once it is committed."""
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
            "current_task() is only available inside a task's execute() or revert() "
            "run by a serial engine or a thread pool"
        ) from None


@contextlib.contextmanager
def bind_context(context: TaskContext) -> Iterator[None]:
    """Make ``context`` the current task (and its trace context current) inside the block."""
    token = _CURRENT.set(context)
    trace_token = observe.enter(context.trace_context)
    try:
        yield
    finally:
        observe.leave(trace_token)
        _CURRENT.reset(token)


def call_in_context(context: TaskContext, func: Any, *args: Any) -> Any:
    """Call ``func(*args)`` with ``context`` as the current task."""
    with bind_context(context):
        return func(*args)
