"""A flow that a child process runs until it is signalled (tests/engine/test_ownership.py).

``python -m tests.engine.flows_for_signals URI STARTED_FILE UUID_FILE``: the one long task
touches STARTED_FILE once running, then checkpoints until it is asked to stop.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

import ledgerflow as lf


def waits() -> lf.Flow:
    """A task that works until stop_requested, then one more."""

    @lf.task(name="long")
    def long(started: str) -> None:
        ctx = lf.current_task()
        Path(started).touch()
        beats = 0
        while not ctx.stop_requested:
            beats += 1
            ctx.checkpoint(beats)
            threading.Event().wait(0.01)
        raise lf.Interrupted()

    @lf.task(name="after", provides="done")
    def after() -> bool:
        return True

    return lf.LinearFlow("waits", long, after)


def stalls() -> lf.Flow:
    """``slow`` waits for the file ``go`` (a SIGSTOP lands meanwhile), then ``last`` runs."""

    @lf.task(name="slow", provides="slow_pid")
    def slow(started: str, go: str) -> int:
        Path(started).touch()
        while not Path(go).exists():
            threading.Event().wait(0.01)
        return os.getpid()

    @lf.task(name="last", provides="last_pid")
    def last(slow_pid: int) -> int:
        return os.getpid()

    return lf.LinearFlow("stalls", slow, last)


def main(argv: list[str]) -> int:
    """Run the flow, print its final state."""
    if argv[0] == "stall":
        uri, started, go, uuid_file = argv[1:]
        engine = lf.load(
            "tests.engine.flows_for_signals:stalls",
            backend=uri,
            store={"started": started, "go": go},
            lease=1.0,
        )
        Path(uuid_file).write_text(engine.flow_detail.uuid)
        print(json.dumps(engine.run()))
        return 0
    if argv[0] == "resume":
        print(json.dumps(lf.resume(argv[1], argv[2], wait=60)))
        return 0
    uri, started, uuid_file = argv
    engine = lf.load(waits(), backend=uri, store={"started": started})
    Path(uuid_file).write_text(engine.flow_detail.uuid)
    engine.run()
    print(engine.flow_detail.state)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
