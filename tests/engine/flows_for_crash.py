"""Flow factories that tests run in child processes (importable by path).

Every execution is appended to the file named by LEDGERFLOW_TEST_LOG with
O_APPEND + fsync, so a SIGKILL cannot lose a line that was written.
"""

from __future__ import annotations

import os
import time

import ledgerflow as lf

CHAIN_LENGTH = 12


def record(line: str) -> None:
    """Append ``line`` durably to the execution log."""
    path = os.environ.get("LEDGERFLOW_TEST_LOG")
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


class Step(lf.Task):
    """Adds its index to the running total; kills the process where told to."""

    def __init__(self, index: int) -> None:
        super().__init__(
            name=f"step{index}",
            provides=f"total{index}",
            rebind={"total": f"total{index - 1}"},
        )
        self.index = index

    def execute(self, total: int) -> int:
        record(f"start {self.name}")
        if os.environ.get("LEDGERFLOW_TEST_KILL_AT") == self.name:
            os.kill(os.getpid(), 9)
        time.sleep(float(os.environ.get("LEDGERFLOW_TEST_SLEEP", "0")))
        record(f"done {self.name}")
        return total + self.index


def chain() -> lf.Flow:
    """A linear flow of CHAIN_LENGTH steps; the last total is sum(1..CHAIN_LENGTH)."""
    return lf.LinearFlow("chain", *(Step(i) for i in range(1, CHAIN_LENGTH + 1)))


@lf.task(provides="a")
def one() -> int:
    """Provide 1."""
    return 1


@lf.task(provides="b")
def two() -> int:
    """Provide 2."""
    return 2


@lf.task(provides="c")
def add(a: int, b: int) -> int:
    """Add a and b."""
    return a + b


def small_graph() -> lf.Flow:
    """Two independent tasks and their sum."""
    return lf.GraphFlow("small", one, two, add)
