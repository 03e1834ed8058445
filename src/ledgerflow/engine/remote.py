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

The worker keeps its connection open while the task runs: when the process dies, the
engine sees the connection drop before the pool reports it broken, and so knows which
task's worker died (``Channel.dropped``).
"""

from __future__ import annotations

import contextlib
import itertools
import secrets
import threading
import time
from collections.abc import Mapping
from multiprocessing.connection import Client, Connection, Listener
from typing import Any

from ledgerflow.engine.context import TaskContext, call_in_context, call_with_timeout
from ledgerflow.errors import (
    ConflictError,
    FencedOut,
    LedgerflowError,
    SerializationError,
    StorageError,
)
from ledgerflow.task import Task

__all__ = ["Channel", "RemoteContext", "run_remote"]

#: Errors a checkpoint's commit may raise in the engine, raised again in the worker.
_ERRORS: dict[str, type[LedgerflowError]] = {
    "FencedOut": FencedOut,
    "ConflictError": ConflictError,
    "StorageError": StorageError,
    "SerializationError": SerializationError,
}


class RemoteContext(TaskContext):
    """``current_task()`` in a worker process: every question goes to the engine."""

    def __init__(self, address: tuple[str, int], key: bytes, token: str, local: TaskContext):
        self._address = address
        self._key = key
        self._token = token
        self._conn: Connection | None = None
        self.abandoned = False
        self.name = local.name
        self.task_uuid = local.task_uuid
        self.attempt = local.attempt
        self.trace_context = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_conn": None}

    def _ask(self, *message: Any) -> Any:
        try:
            if self._conn is None:
                self._conn = Client(self._address, authkey=self._key)
            self._conn.send(message)
            kind, value = self._conn.recv()
        except (OSError, EOFError) as exc:
            # Its engine died or let go of the run: nothing this try does can be saved.
            raise ConnectionError(
                f"task {self.name!r} lost its engine at {self._address}: {exc!r}"
            ) from exc
        if kind == "error":
            name, text = value
            raise _ERRORS.get(name, StorageError)(text)
        return value

    def begin(self) -> None:
        """Tell the engine this try started here (its connection now stands for the process)."""
        self._ask("begin", self._token)

    def end(self) -> None:
        """Tell the engine this try ended (so the connection closing is no death)."""
        if self._conn is not None:
            with contextlib.suppress(OSError, EOFError, ConnectionError):
                self._ask("end", self._token)
            self._conn.close()
            self._conn = None

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


def run_remote(
    context: RemoteContext, task: Task, inputs: Mapping[str, Any], begin: bool = True
) -> Any:
    """What a worker runs: ``task.execute`` with ``context`` current, under its timeout.

    ``begin``: say so to the engine first (a process pool, where a worker's death must be
    told apart from the pool's); otherwise the worker connects only if the task asks.
    """
    if begin:
        context.begin()
    try:
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
    finally:
        context.end()


class Channel:
    """The engine's end: answers the workers of one run, on a socket of its own."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._key = secrets.token_bytes(32)
        self._listener = Listener((host, 0), authkey=self._key)
        self.address: tuple[str, int] = self._listener.address
        self._lock = threading.Lock()
        self._contexts: dict[str, TaskContext] = {}
        self._begun: set[str] = set()
        #: Token -> when its worker's connection dropped before the try ended.
        self._dropped: dict[str, float] = {}
        self._ids = itertools.count()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="ledgerflow-channel", daemon=True)
        self._thread.start()

    def open(self, context: TaskContext) -> tuple[str, RemoteContext]:
        """Register a try about to be sent away; return its token and the worker's context."""
        token = f"{context.name}#{next(self._ids)}"
        with self._lock:
            self._contexts[token] = context
        return token, RemoteContext(self.address, self._key, token, context)

    def forget(self, token: str) -> None:
        """The try is over as far as the engine is concerned: drop what it sends later."""
        with self._lock:
            self._contexts.pop(token, None)
            self._begun.discard(token)
            self._dropped.pop(token, None)

    def began(self, token: str) -> bool:
        """Whether the try's worker said it started."""
        with self._lock:
            return token in self._begun

    def dropped(self, token: str) -> float | None:
        """When the try's worker connection dropped before it ended (its process died)."""
        with self._lock:
            return self._dropped.get(token)

    def close(self) -> None:
        """Stop listening (tries still out find nobody: their checkpoints raise)."""
        self._closed = True
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
        token: str | None = None
        ended = False
        try:
            while True:
                kind, token, *rest = conn.recv()
                ended = kind == "end"
                conn.send(self._reply(kind, token, rest))
        except (EOFError, OSError):
            if token is not None and not ended:
                with self._lock:
                    if token in self._contexts:
                        self._dropped[token] = time.monotonic()
        finally:
            conn.close()

    def _reply(self, kind: str, token: str, rest: list[Any]) -> tuple[str, Any]:
        with self._lock:
            context = self._contexts.get(token)
            if kind == "begin" and context is not None:
                self._begun.add(token)
        if context is None:  # a try the engine gave up on: nothing it says counts
            return ("ok", None) if kind != "stop" else ("ok", True)
        if kind == "last":
            return "ok", context.last_checkpoint
        if kind == "stop":
            return "ok", context.stop_requested
        if kind == "checkpoint":
            try:
                context.checkpoint(rest[0])
            except Exception as exc:
                return "error", (type(exc).__name__, str(exc))
        return "ok", None
