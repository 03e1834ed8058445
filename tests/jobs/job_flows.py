"""Flow factories that jobs in the tests name (imported by conductors, in any process)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import ledgerflow as lf


@lf.task(provides="doubled")
def double(n: int = 1) -> int:
    """Double ``n``."""
    return n * 2


def one_task() -> lf.Flow:
    """One quick task."""
    return lf.LinearFlow("one-task", double)


@lf.task(provides="out")
def note(marker: str, n: int = 0) -> int:
    """Append this process's pid to ``marker`` (a file): who ran it, how often."""
    with open(marker, "a") as handle:
        handle.write(f"{os.getpid()} {n}\n")
    return n


@lf.task
def hold(marker: str, release: str) -> None:
    """Say "started" in ``marker`` + '.started' then wait until the file ``release`` exists."""
    Path(marker + ".started").write_text(str(os.getpid()))
    while not Path(release).exists():
        ctx = lf.current_task()
        if getattr(ctx, "stop_requested", False):
            raise lf.Interrupted()
        time.sleep(0.02)


@lf.task
def fail(message: str = "boom") -> None:
    """Always fail."""
    raise RuntimeError(message)


@lf.task
def kill_my_process() -> None:
    """SIGKILL the process running this task (its conductor)."""
    os.kill(os.getpid(), signal.SIGKILL)


def noted() -> lf.Flow:
    """One task that notes who ran it."""
    return lf.LinearFlow("noted", note)


def held() -> lf.Flow:
    """Note, hold until released, note again."""
    first = note.__class__  # same task type, two instances with their own names
    del first
    return lf.LinearFlow(
        "held",
        lf.task(name="before", provides="before")(_note_before),
        hold,
        lf.task(name="after", provides="after")(_note_after),
    )


def _note_before(marker: str) -> str:
    with open(marker, "a") as handle:
        handle.write(f"before {os.getpid()}\n")
    return "before"


def _note_after(marker: str) -> str:
    with open(marker, "a") as handle:
        handle.write(f"after {os.getpid()}\n")
    return "after"


def failing() -> lf.Flow:
    """A flow whose only task fails."""
    return lf.LinearFlow("failing", fail)


def killer() -> lf.Flow:
    """A flow whose task kills its conductor every time."""
    return lf.LinearFlow("killer", kill_my_process)


@lf.task
def pace(seconds: float = 0.1) -> None:
    """Take ``seconds``: jobs that last long enough to be in flight when a server blinks."""
    time.sleep(seconds)


def paced() -> lf.Flow:
    """Note who ran it, then take a little time."""
    return lf.LinearFlow("paced", note, pace)
