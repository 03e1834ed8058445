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

    def execute(self, total: int = 0) -> int:
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


@lf.task(provides="counted")
def count_to_five() -> int:
    """Count with a checkpoint per step; may die half way (LEDGERFLOW_TEST_KILL_AT=count)."""
    ctx = lf.current_task()
    start = ctx.last_checkpoint or 0
    record(f"count from {start}")
    for i in range(start, 5):
        ctx.checkpoint(i + 1)
        if i == 2 and os.environ.get("LEDGERFLOW_TEST_KILL_AT") == "count":
            os.kill(os.getpid(), 9)
    return 5


def counting() -> lf.Flow:
    """One long task that checkpoints."""
    return lf.LinearFlow("counting", count_to_five)


class AlwaysFails(lf.Task):
    """Logs each try and fails; its Retry waits LEDGERFLOW_TEST_BACKOFF seconds between."""

    def execute(self) -> None:
        record(f"try {self.name}")
        raise ConnectionError("the service is down")


def flaky_retry() -> lf.Flow:
    """One task with Retry(attempts=3) that never succeeds."""
    backoff = float(os.environ.get("LEDGERFLOW_TEST_BACKOFF", "0.001"))
    retry = lf.Retry(attempts=3, backoff=backoff, max_backoff=backoff)
    return lf.LinearFlow("flaky", AlwaysFails(name="flaky", retry=retry))


def main(argv: list[str]) -> int:
    """``run URI FACTORY UUID_FILE`` or ``resume URI UUID``; prints the results as JSON."""
    import json

    if argv[0] == "run":
        uri, factory, uuid_file = argv[1:4]
        engine = lf.load(f"tests.engine.flows_for_crash:{factory}", backend=uri)
        with open(uuid_file + ".tmp", "w") as handle:
            handle.write(engine.flow_detail.uuid)
        os.replace(uuid_file + ".tmp", uuid_file)
        results = engine.run()
    else:
        results = lf.resume(argv[1], argv[2])
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
