"""How a task running in another process (a process pool, a Dask worker) reaches its engine.

A worker holds no connection to the store and no fence: it asks the engine.  The engine
listens on a socket of its own (``Channel``); each task it sends away carries a
``RemoteContext`` (address, a per-run key, a token naming the try).  ``checkpoint()``
sends the value to the engine, which commits it through the run's ``Storage``, under the
flow's fence and the one write path every other change takes, and answers only once it
is committed: the checkpoint is durable when ``checkpoint()`` returns, and a stale engine
(fenced out) or a broken store makes it raise in the worker.  ``last_checkpoint`` and
``stop_requested`` are asked of the engine as well, so that a try the executor started
again on another worker (Dask does so when a worker dies) sees the checkpoint the first
one saved.

A try is sent before a worker is free for it (Dask queues it at its scheduler, a
process pool in its call queue), so that no worker waits on the engine between tasks.
It becomes RUNNING only when a worker starts it: ``begin`` asks the engine, which marks
it RUNNING, commits, and answers with its attempt (or tells it not to start, when the
run is stopping: the try raises ``NotStarted`` and nothing was recorded).

On Dask a try's result comes back the same way, with its ``end``: Dask would hand it
to the engine only after fetching it from the worker, a round trip through the
scheduler that was most of a short task's overhead.  The worker then returns None to
Dask instead (the result is not carried twice); a result the engine did not take (a
try it gave up on, one that does not pickle) goes back through Dask as before.

Each worker thread keeps its connection open: when the process dies, the engine sees the
connection drop before the pool reports it broken, and so knows which task's worker died
(``Channel.dropped``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pickle
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from multiprocessing.connection import Client, Connection, Listener
from typing import Any

from ledgerflow.engine.context import TaskContext, execute_in_context
from ledgerflow.errors import (
    ConflictError,
    FencedOut,
    LedgerflowError,
    SerializationError,
    StorageError,
)
from ledgerflow.task import Task

__all__ = ["Channel", "NotStarted", "RemoteContext", "run_remote"]

#: Per worker thread: address -> its open connection to that engine.
_LINKS = threading.local()


class NotStarted(Exception):
    """The engine told a try sent ahead not to start (its run is stopping)."""


def _link(address: tuple[str, int], key: bytes) -> Connection:
    links: dict[tuple[str, int], Connection] = _LINKS.__dict__.setdefault("links", {})
    conn = links.get(address)
    if conn is None:
        conn = links[address] = Client(address, authkey=key)
    return conn


def _unlink(address: tuple[str, int]) -> None:
    conn = _LINKS.__dict__.get("links", {}).pop(address, None)
    if conn is not None:
        with contextlib.suppress(OSError):
            conn.close()


#: Errors a checkpoint's commit may raise in the engine, raised again in the worker.
_ERRORS: dict[str, type[LedgerflowError]] = {
    "FencedOut": FencedOut,
    "ConflictError": ConflictError,
    "StorageError": StorageError,
    "SerializationError": SerializationError,
}


class RemoteContext(TaskContext):
    """``current_task()`` in a worker process: every question goes to the engine."""

    def __init__(
        self,
        address: tuple[str, int],
        key: bytes,
        token: str,
        local: TaskContext,
        delivers: bool = False,
    ):
        self._address = address
        self._key = key
        self._token = token
        #: Whether the try's result goes to the engine with ``end`` (see ``run_remote``).
        self.delivers = delivers
        self.abandoned = False
        self.name = local.name
        self.task_uuid = local.task_uuid
        self.attempt = local.attempt
        self.trace_context = None

    def _ask(self, *message: Any) -> Any:
        try:
            conn = _link(self._address, self._key)
            conn.send(message)
            kind, value = conn.recv()
        except (OSError, EOFError) as exc:
            _unlink(self._address)
            # Its engine died or let go of the run: nothing this try does can be saved.
            raise ConnectionError(
                f"task {self.name!r} lost its engine at {self._address}: {exc!r}"
            ) from exc
        if kind == "error":
            name, text = value
            raise _ERRORS.get(name, StorageError)(text)
        return value

    def begin(self) -> None:
        """Ask the engine to start this try (it marks it RUNNING); NotStarted if it says no."""
        go, attempt = self._ask("begin", self._token, os.getpid())
        if not go:
            raise NotStarted(self.name)
        self.attempt = attempt

    def end(self) -> None:
        """Tell the engine this try ended (so the connection closing later is no death)."""
        with contextlib.suppress(OSError, EOFError):
            self._ask("end", self._token)

    def end_with(self, result: Any) -> bool:
        """End the try sending its result along; whether the engine took it.

        False when it did not (a try it gave up on, a result that does not pickle, a
        lost engine): the result then goes back through the executor as usual.
        """
        if not self.delivers:
            self.end()
            return False
        try:
            return bool(self._ask("end", self._token, result))
        except (OSError, EOFError, pickle.PicklingError, TypeError, AttributeError):
            self.end()
            return False

    @property
    def last_checkpoint(self) -> Any:
        """The value saved by the last ``checkpoint()`` (an earlier try or process), or None."""
        return self._ask("last", self._token)

    @property
    def stop_requested(self) -> bool:
        """True once a suspend, cancel or timeout asks the task to stop early."""
        return self.abandoned or bool(self._ask("stop", self._token))

    def checkpoint(self, value: Any) -> None:
        """Send ``value`` to the engine; returns once the engine committed it."""
        if self.abandoned:
            return
        self._ask("checkpoint", self._token, value)

    def __repr__(self) -> str:
        return f"<RemoteContext {self.name!r} attempt={self.attempt}>"


def run_remote(context: RemoteContext, task: Task, inputs: Mapping[str, Any]) -> Any:
    """What a worker runs: ``task.execute`` with ``context`` current, under its timeout.

    A result the engine took over the channel is not returned again (None instead):
    the executor would only carry it back a second time.
    """
    context.begin()
    try:
        result = execute_in_context(context, task, inputs)
    except BaseException:
        context.end()
        raise
    return None if context.end_with(result) else result


class Channel:
    """The engine's end: answers the workers of one run, on a socket of its own."""

    def __init__(
        self,
        on_begin: Callable[[str], tuple[bool, int] | None],
        host: str = "127.0.0.1",
        on_drop: Callable[[str], None] | None = None,
        on_result: Callable[[str, Any], bool] | None = None,
    ) -> None:
        #: Called (in a channel thread) when a worker starts a try: (go on?, its attempt),
        #: or None when the engine answers later, itself (``answer_begin``).
        self._on_begin = on_begin
        #: Called (in a channel thread) when a running try's worker connection dropped.
        self._on_drop = on_drop
        #: Called (in a channel thread) with a try's result sent with its end: taken?
        self._on_result = on_result
        self._key = secrets.token_bytes(32)
        self._listener = Listener((host, 0), authkey=self._key)
        self.address: tuple[str, int] = self._listener.address
        self._lock = threading.Condition()
        self._contexts: dict[str, TaskContext] = {}
        #: Token -> the pid of the process that started the try.
        self.pids: dict[str, int] = {}
        #: Token -> when its worker's connection dropped before the try ended.
        self._dropped: dict[str, float] = {}
        #: Token -> the connection of a worker waiting for the answer to its begin.
        self._waiting: dict[str, Connection] = {}
        self._ids = itertools.count()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="ledgerflow-channel", daemon=True)
        self._thread.start()

    def open(self, context: TaskContext) -> tuple[str, RemoteContext]:
        """Register a try about to be sent away; return its token and the worker's context."""
        token = f"{context.name}#{next(self._ids)}"
        with self._lock:
            self._contexts[token] = context
        delivers = self._on_result is not None
        return token, RemoteContext(self.address, self._key, token, context, delivers)

    def rebind(self, token: str, context: TaskContext) -> None:
        """The try started: answer for it from ``context`` (made once it was RUNNING)."""
        with self._lock:
            if token in self._contexts:
                self._contexts[token] = context

    def forget(self, token: str) -> None:
        """The try is over as far as the engine is concerned: drop what it sends later."""
        with self._lock:
            self._contexts.pop(token, None)
            self._dropped.pop(token, None)
            self.pids.pop(token, None)
        self.answer_begin(token, False, 0)

    def answer_begin(self, token: str, go: bool, attempt: int) -> None:
        """Answer the worker waiting to start the try ``token`` (if one is): go on or not.

        The engine's thread sends this itself, on the worker's connection (the channel's
        thread only reads from it meanwhile): waking that thread to send it would cost
        a start as long as the engine's thread keeps the interpreter busy.
        """
        with self._lock:
            conn = self._waiting.pop(token, None)
        if conn is not None:
            with contextlib.suppress(OSError, ValueError):  # its worker is gone
                conn.send(("ok", (go, attempt)))

    def await_drops(self, tokens: list[str], timeout: float = 5.0) -> None:
        """Wait (after their processes are gone) until each try's connection was seen to drop."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not all(token in self._dropped for token in tokens):
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._lock.wait(left)

    def dropped(self, token: str) -> float | None:
        """When the try's worker connection dropped before it ended (its process died)."""
        with self._lock:
            return self._dropped.get(token)

    @property
    def closed(self) -> bool:
        """Whether the run is over (workers asking now get no answer that counts)."""
        return self._closed

    def close(self) -> None:
        """Stop listening (tries still out find nobody: their checkpoints raise)."""
        with self._lock:
            self._closed = True
            waiting = list(self._waiting)
        for token in waiting:  # tries sent ahead that the run no longer starts
            self.answer_begin(token, False, 0)
        with contextlib.suppress(OSError):
            # Wake the accept() below so that its thread ends.
            Client(self.address, authkey=self._key).close()
        self._thread.join()
        self._listener.close()

    def _serve(self) -> None:
        while True:
            try:
                conn = self._listener.accept()
            except (OSError, EOFError, ValueError):
                if self._closed:
                    return
                continue  # a peer that failed the handshake: not ours
            if self._closed:
                conn.close()
                return
            threading.Thread(
                target=self._answer, args=(conn,), name="ledgerflow-channel-peer", daemon=True
            ).start()

    def _answer(self, conn: Connection) -> None:
        running: str | None = None  # the try this worker thread runs now
        try:
            while True:
                kind, token, *rest = conn.recv()
                if kind == "begin":
                    running = token
                    if self._begin_later(conn, token, rest[0]):
                        continue
                elif kind == "end":
                    running = None
                conn.send(self._reply(kind, token, rest))
        except (EOFError, OSError):
            if running is not None:
                with self._lock:
                    known = running in self._contexts
                    if known:
                        self._dropped[running] = time.monotonic()
                        self._lock.notify_all()
                if known and self._on_drop is not None:
                    self._on_drop(running)
        finally:
            conn.close()

    def _begin_later(self, conn: Connection, token: str, pid: int) -> bool:
        """Pass a worker's begin to the engine; whether the engine answers it (later)."""
        with self._lock:
            if token not in self._contexts or self._closed:
                return False  # _reply refuses it
            self.pids[token] = pid
            self._waiting[token] = conn
        answer = self._on_begin(token)
        if answer is not None:
            self.answer_begin(token, *answer)
        return True

    def _reply(self, kind: str, token: str, rest: list[Any]) -> tuple[str, Any]:
        with self._lock:
            context = self._contexts.get(token)
        if context is None or kind == "begin":  # a try the engine gave up on (or closed)
            return "ok", {"stop": True, "begin": (False, 0)}.get(kind)
        if kind == "last":
            return "ok", context.last_checkpoint
        if kind == "stop":
            return "ok", context.stop_requested
        if kind == "end":
            if rest and self._on_result is not None:
                return "ok", self._on_result(token, rest[0])
            return "ok", None
        if kind == "checkpoint":
            try:
                context.checkpoint(rest[0])
            except Exception as exc:
                return "error", (type(exc).__name__, str(exc))
        return "ok", None
