"""What checking every field before a write costs the engine's hot path (target: <= 2 us/task).

Times ``records._task_fits`` (the check every ``task_to_row`` runs) and the full
rule-by-rule ``check_fields`` (what a value the quick check does not recognise
costs), next to the whole ``task_to_row`` encoding they are part of.
"""

from __future__ import annotations

import timeit
from datetime import UTC, datetime

from ledgerflow import states
from ledgerflow.models import TaskDetail
from ledgerflow.persistence import records

ROUNDS = 200_000


def _task() -> TaskDetail:
    task = TaskDetail("step", type="pkg.mod.Task", version="1.0", state=states.SUCCESS)
    task.result = {"rows": 10}
    task.attempts = 1
    task.started_at = task.finished_at = datetime.now(UTC)
    return task


def _per_call(statement: str, namespace: dict[str, object]) -> float:
    """Best of five runs, microseconds per call."""
    timer = timeit.Timer(statement, globals=namespace)
    return min(timer.repeat(5, ROUNDS)) / ROUNDS * 1e6


def main() -> None:
    """Print the figures."""
    namespace: dict[str, object] = {"records": records, "task": _task()}
    quick = _per_call("records._task_fits(task)", namespace)
    full = _per_call("records.check_fields('task', task)", namespace)
    row = _per_call("records.task_to_row(task, 'flow')", namespace)
    print(f"quick field check per task (hot path): {quick:.2f} us  (target <= 2 us)")
    print(f"full rule-by-rule check per task:      {full:.2f} us")
    print(f"task_to_row, check included:           {row:.2f} us  (check = {quick / row:.0%})")


if __name__ == "__main__":
    main()
