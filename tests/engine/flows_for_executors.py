"""Flows that run on process pools and Dask workers (importable there by path).

Tasks talk to the test through files in ``workdir`` (a store value): they touch a file
once something happened (a checkpoint committed, a try started) and wait for one the
test creates, so that tests synchronise on events, never on sleeps.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import ledgerflow as lf


def touch(path: Path, text: str = "") -> None:
    """Create ``path`` with ``text`` durably (written whole, then renamed into place)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def wait_for(
    path: Path,
    timeout: float = 120.0,
    context: lf.TaskContext | None = None,
    running: Callable[[], object] | None = None,
) -> None:
    """Block until ``path`` exists (what the test creates to let a task go on).

    With ``context``, ask it whether to stop on the way: once its engine is gone that
    raises, and the try ends instead of holding its worker.  With ``running`` (a test's
    view of its engine: falsy once the run ended), stop waiting as soon as the run is
    over, so that the test reports how the run ended rather than a timeout.
    """
    deadline = time.monotonic() + timeout
    while not path.exists():
        if context is not None and context.stop_requested:
            raise lf.Interrupted()
        if running is not None and not running():
            raise AssertionError(f"the run ended before {path.name} appeared")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.01)


def started_then_wait(started: Path, go: Path) -> None:
    """Touch ``started``, then wait for ``go`` (a job that holds its pool worker)."""
    touch(started)
    wait_for(go, timeout=600.0)


def log(workdir: str, line: str) -> None:
    """Append ``line`` to the workdir's execution log (O_APPEND: a kill loses no line)."""
    fd = os.open(Path(workdir) / "log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def executions(workdir: str, name: str) -> int:
    """How many times task ``name`` started, from the log."""
    path = Path(workdir) / "log"
    if not path.exists():
        return 0
    return path.read_text().split().count(name)


# ---- a task that saves a checkpoint, then waits to be killed (or let go) --------------
@lf.task(provides="outcome", retry=lf.Retry(attempts=2))
def victim(workdir: str) -> dict[str, object]:
    """First try: checkpoint its pid, say so, wait. A later try: report what it found."""
    log(workdir, "victim")
    context = lf.current_task()
    found = context.last_checkpoint
    if found is not None:
        return {"found": found, "pid": os.getpid(), "attempt": context.attempt}
    context.checkpoint({"pid": os.getpid(), "attempt": context.attempt})
    touch(Path(workdir) / "checkpointed", str(os.getpid()))
    wait_for(Path(workdir) / "release", context=context)
    return {"found": None, "pid": os.getpid(), "attempt": context.attempt}


@lf.task(provides="bystood")
def bystander(workdir: str) -> int:
    """Runs beside the victim; says when it started; waits for the test's word."""
    log(workdir, "bystander")
    touch(Path(workdir) / f"bystander-{executions(workdir, 'bystander')}")
    wait_for(Path(workdir) / "go")
    return os.getpid()


def killed_worker() -> lf.Flow:
    """The victim and a bystander side by side."""
    return lf.UnorderedFlow("killed-worker", victim, bystander)


def checkpointer() -> lf.Flow:
    """The victim alone (the engine is what gets killed)."""
    return lf.LinearFlow("checkpointer", victim)


# ---- retries ---------------------------------------------------------------------------
@lf.task(provides="flaky", retry=lf.Retry(attempts=3))
def flaky(workdir: str) -> int:
    """Fails on its first two executions, then returns how many there were."""
    log(workdir, "flaky")
    count = executions(workdir, "flaky")
    if count < 3:
        raise RuntimeError(f"execution {count} fails")
    return count


def retried() -> lf.Flow:
    """One flaky task."""
    return lf.LinearFlow("retried", flaky)


# ---- many at once ------------------------------------------------------------------------
class Nap(lf.Task):
    """Sleeps ``seconds`` (what a task of real work would spend) and returns its index."""

    def __init__(self, index: int, seconds: float) -> None:
        super().__init__(name=f"nap{index}", provides=f"nap{index}")
        self.index = index
        self.seconds = seconds

    def execute(self) -> int:
        time.sleep(self.seconds)
        return self.index


def wide(count: int = 6, seconds: float = 0.05) -> lf.Flow:
    """``count`` independent naps."""
    return lf.UnorderedFlow("wide", *(Nap(i, seconds) for i in range(count)))


def wide_default() -> lf.Flow:
    """Six naps of 50 ms."""
    return wide()


# ---- context in workers --------------------------------------------------------------
@lf.task(provides="seen")
def introspect() -> dict[str, object]:
    """What current_task() tells a worker, after a checkpoint."""
    context = lf.current_task()
    before = context.last_checkpoint
    context.checkpoint(["saved", os.getpid()])
    return {
        "name": context.name,
        "attempt": context.attempt,
        "before": before,
        "after": context.last_checkpoint,
        "stop": context.stop_requested,
        "pid": os.getpid(),
    }


def introspecting() -> lf.Flow:
    """One task that looks at its context."""
    return lf.LinearFlow("introspecting", introspect)


# ---- what cannot travel ----------------------------------------------------------------
class Locked(lf.Task):
    """Holds a lock: it cannot be pickled, so it cannot go to another process."""

    def __init__(self) -> None:
        super().__init__(name="locked", provides="locked")
        self.lock = threading.Lock()

    def execute(self, workdir: str) -> int:
        log(workdir, "locked")
        return 1


@lf.task(provides="fine")
def fine(workdir: str) -> int:
    """A task that pickles; logs that it ran."""
    log(workdir, "fine")
    return 2


def unpicklable() -> lf.Flow:
    """A picklable task, then one that is not."""
    return lf.LinearFlow("unpicklable", fine, Locked())


# ---- a task that kills its own worker, every time ---------------------------------------
@lf.task(provides="never")
def suicide(workdir: str) -> int:
    """SIGKILLs the process it runs in (no Retry: the flow fails)."""
    log(workdir, "suicide")
    os.kill(os.getpid(), 9)
    return 0


def dying() -> lf.Flow:
    """A task that kills its worker, after one that ran (and so is reverted)."""
    return lf.LinearFlow("dying", fine, suicide)


@lf.task(provides="where")
def whereami() -> int:
    """The pid of the process running it."""
    return os.getpid()


def located() -> lf.Flow:
    """One task that tells where it ran."""
    return lf.LinearFlow("located", whereami)


# ---- a task whose unpickling kills the worker (its try never starts) ------------------
def _exit_in_a_worker() -> None:
    """Kill this process if it is a pool worker (the test's own process is left alone)."""
    if multiprocessing.parent_process() is not None:
        os._exit(3)


class _ExitWhenUnpickled:
    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (_exit_in_a_worker, ())


class WorkerKiller(lf.Task):
    """Kills the pool worker that unpickles it, before its try can begin."""

    def __init__(self) -> None:
        super().__init__(name="killer")
        self.bomb = _ExitWhenUnpickled()

    def execute(self) -> None:
        """Never reached in a worker."""


def unstartable() -> lf.Flow:
    """One task no worker survives receiving."""
    return lf.LinearFlow("unstartable", WorkerKiller())


# ---- tries sent ahead of a run that was taken over meanwhile --------------------------
class Logged(lf.Task):
    """Logs its start; the first two wait for the test's go (they hold both workers)."""

    def __init__(self, index: int) -> None:
        super().__init__(name=f"logged{index}", provides=f"logged{index}")
        self.index = index

    def execute(self, workdir: str) -> int:
        log(workdir, self.name)
        if self.index < 2:
            touch(Path(workdir) / f"{self.name}-started")
            wait_for(Path(workdir) / "go")
        return self.index


def sent_ahead() -> lf.Flow:
    """Two tries that hold the workers and two sent ahead of them."""
    return lf.UnorderedFlow("sent-ahead", *(Logged(i) for i in range(4)))
