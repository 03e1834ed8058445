"""Where a run's ``async def`` execute() and revert() coroutines run.

The engine itself stays synchronous (its writes are blocking database calls).  A
coroutine runs on the caller's event loop when the flow was started with ``lf.arun`` or
``lf.aresume`` (the engine then works in a thread, so that loop is never blocked);
otherwise on a loop of the run's own: inline in the engine's thread for the serial
engine, and in one background thread for the parallel engine, where they run
concurrently, as many at a time as ``max_workers`` lets the runner start.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent import futures
from typing import Any

from ledgerflow.engine.context import TaskContext, bind_context

__all__ = ["AsyncBridge", "awaiting", "in_context"]


async def in_context(context: TaskContext, func: Callable[..., Any], *args: Any) -> Any:
    """Await ``func(*args)`` with ``context`` as the current task (inside the loop's task)."""
    with bind_context(context):
        return await func(*args)


async def awaiting(context: TaskContext, awaitable: Awaitable[Any]) -> Any:
    """Await an awaitable made already (an async revert's call) with ``context`` current."""
    with bind_context(context):
        return await awaitable


def _loop_running_here() -> bool:
    # asyncio's own non-raising probe (exported by asyncio.events): no exception per task.
    return asyncio.events._get_running_loop() is not None


class AsyncBridge:
    """Runs coroutines for one engine run; ``close()`` when the run ends."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._caller_loop = loop
        self._inline_loop: asyncio.AbstractEventLoop | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coro`` to its end and return its result (or raise its exception)."""
        if self._caller_loop is not None or _loop_running_here():
            # A loop already runs in this thread (a plain lf.run inside async code) or the
            # caller's loop runs elsewhere: hand the coroutine over and wait.
            return self.submit(coro).result()
        if self._inline_loop is None:
            self._inline_loop = asyncio.new_event_loop()
        return self._inline_loop.run_until_complete(coro)

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
        if self._inline_loop is not None:
            loop, self._inline_loop = self._inline_loop, None
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
        if self._thread_loop is not None and self._thread is not None:
            loop, thread = self._thread_loop, self._thread
            self._thread_loop = self._thread = None
            asyncio.run_coroutine_threadsafe(loop.shutdown_asyncgens(), loop).result()
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
