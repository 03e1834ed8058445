"""Where a run's ``async def`` execute() and revert() coroutines run.

The engine itself stays synchronous (its writes are blocking database calls).  A
coroutine runs on the caller's event loop when the flow was started with ``lf.arun`` or
``lf.aresume`` (the engine then works in a thread, so that loop is never blocked);
otherwise on a loop of the run's own: inline in the engine's thread for the serial
engine, and in one background thread for the parallel engine, where they run
concurrently, as many at a time as ``max_workers`` lets the runner start.

Inline, a coroutine takes its first step at once, in the engine's thread, with the
run's loop as the running loop and the loop's one host task as the current task (so
``get_running_loop()``, ``asyncio.timeout`` and task groups work as in any task).  A
coroutine that ends in that step (one that awaits nothing that blocks) costs a call,
not a turn of the event loop; one that waits goes on in the host task, which drives it
as ``asyncio.Task`` would, while the engine runs the loop until it ends.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent import futures
from typing import Any

from ledgerflow.engine.context import TaskContext, bind_context
from ledgerflow.errors import TaskTimeout

__all__ = ["AsyncBridge", "awaiting", "in_context"]


async def in_context(
    context: TaskContext, func: Callable[..., Any], *args: Any, timeout: float | None = None
) -> Any:
    """Await ``func(*args)`` with ``context`` as the current task (inside the loop's task).

    Past ``timeout`` seconds the coroutine is cancelled (unlike a thread, it can be) and
    the try fails with TaskTimeout.
    """
    with bind_context(context):
        if timeout is None:
            return await func(*args)
        try:
            async with asyncio.timeout(timeout) as scope:
                return await func(*args)
        except TimeoutError:
            if not scope.expired():
                raise  # the task's own TimeoutError, not ours
            context.abandon()
            raise TaskTimeout(
                f"task {context.name!r} ran past its timeout of {timeout:g} s"
            ) from None


async def awaiting(context: TaskContext, awaitable: Awaitable[Any]) -> Any:
    """Await an awaitable made already (an async revert's call) with ``context`` current."""
    with bind_context(context):
        return await awaitable


def _loop_running_here() -> bool:
    # asyncio's own non-raising probe (exported by asyncio.events): no exception per task.
    return asyncio.events._get_running_loop() is not None


_Job = tuple[Coroutine[Any, Any, Any], contextvars.Context, Any, "asyncio.Future[Any]"]


class _InlineLoop:
    """The serial engine's own loop, in its thread: first steps at once, the rest hosted."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._wake: asyncio.Future[_Job | None] = self.loop.create_future()
        self._host = self.loop.create_task(self._serve(), name="ledgerflow-inline")
        self.loop.run_until_complete(asyncio.sleep(0))  # the host waits for work now

    def call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coro`` to its end on this loop and return its result (or raise)."""
        context = contextvars.copy_context()  # as a Task has: one context for all steps
        asyncio.events._set_running_loop(self.loop)
        asyncio.tasks._enter_task(self.loop, self._host)
        try:
            yielded = context.run(coro.send, None)
        except StopIteration as stop:
            return stop.value
        finally:
            asyncio.tasks._leave_task(self.loop, self._host)
            asyncio.events._set_running_loop(None)
        done: asyncio.Future[tuple[bool, Any]] = self.loop.create_future()
        self._wake.set_result((coro, context, yielded, done))
        ok, value = self.loop.run_until_complete(done)
        if not ok:
            raise value
        return value

    async def _serve(self) -> None:
        while True:
            job = await self._wake
            if job is None:
                return
            coro, context, yielded, done = job
            self._wake = self.loop.create_future()
            try:
                done.set_result((True, await self._drive(coro, context, yielded)))
            except BaseException as exc:  # the coroutine's outcome, whatever it is
                done.set_result((False, exc))
            while self._host.cancelling():  # a cancel the coroutine ended with is spent
                self._host.uncancel()

    async def _drive(
        self, coro: Coroutine[Any, Any, Any], context: contextvars.Context, yielded: Any
    ) -> Any:
        """Step ``coro`` on from a value it yielded, as asyncio.Task's step does."""
        while True:
            step: Callable[..., Any] = coro.send
            argument: Any = None
            try:
                if yielded is None:  # a bare yield: one turn of the loop
                    await asyncio.sleep(0)
                elif getattr(yielded, "_asyncio_future_blocking", False):
                    yielded._asyncio_future_blocking = False
                    await yielded  # its outcome is read by the coroutine itself
                else:
                    step, argument = coro.throw, RuntimeError(f"bad yield: {yielded!r}")
            except asyncio.CancelledError as exc:
                if yielded is None or not yielded.cancelled():
                    step, argument = coro.throw, exc  # this task was cancelled: pass it on
            except Exception:
                pass  # the awaited future's own failure: the coroutine raises it
            try:
                yielded = context.run(step, argument)
            except StopIteration as stop:
                return stop.value

    def close(self) -> None:
        """End the host and close the loop."""
        self._wake.set_result(None)
        self.loop.run_until_complete(self._host)
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


class AsyncBridge:
    """Runs coroutines for one engine run; ``close()`` when the run ends."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._caller_loop = loop
        self._inline: _InlineLoop | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coro`` to its end and return its result (or raise its exception)."""
        if self._caller_loop is not None or _loop_running_here():
            # A loop already runs in this thread (a plain lf.run inside async code) or the
            # caller's loop runs elsewhere: hand the coroutine over and wait.
            return self.submit(coro).result()
        if self._inline is None:
            self._inline = _InlineLoop()
        return self._inline.call(coro)

    def submit(self, coro: Coroutine[Any, Any, Any]) -> futures.Future[Any]:
        """Start ``coro`` on the loop and return a concurrent future of its outcome."""
        return asyncio.run_coroutine_threadsafe(coro, self._caller_loop or self._background())

    def _background(self) -> asyncio.AbstractEventLoop:
        if self._thread_loop is None:
            loop = asyncio.new_event_loop()
            started = threading.Event()

            def serve() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(started.set)
                loop.run_forever()

            self._thread = threading.Thread(target=serve, name="ledgerflow-async", daemon=True)
            self._thread.start()
            started.wait()
            self._thread_loop = loop
        return self._thread_loop

    def close(self) -> None:
        """Stop and close the loops this bridge made (never the caller's)."""
        if self._inline is not None:
            inline, self._inline = self._inline, None
            inline.close()
        if self._thread_loop is not None and self._thread is not None:
            loop, thread = self._thread_loop, self._thread
            self._thread_loop = self._thread = None
            asyncio.run_coroutine_threadsafe(loop.shutdown_asyncgens(), loop).result()
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
