"""A flow's tasks as data to draw: a shared time axis and every task's tries.

Pure functions over models, used by ``history`` views, the CLI's timeline and the
web view's SVG.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ledgerflow import states
from ledgerflow.models import FlowDetail, TaskDetail

__all__ = ["Bar", "Timeline", "count_states", "task_tries", "timeline"]


@dataclass(frozen=True)
class Bar:
    """One task on a timeline: seconds from the axis start, length, still open."""

    task: TaskDetail
    offset: float
    length: float
    open_ended: bool


@dataclass(frozen=True)
class Timeline:
    """Tasks on a shared time axis (``start`` + ``span`` seconds); ``total`` were timed."""

    start: datetime
    span: float
    bars: list[Bar]
    total: int


def timeline(
    tasks: Sequence[TaskDetail], now: datetime, rows: int | None = None
) -> Timeline | None:
    """The timeline of ``tasks`` (None if none started); past ``rows``, the longest ones.

    A task still RUNNING draws to ``now``; one whose end is unknown for another reason
    draws to the end of the axis.
    """
    timed = [t for t in tasks if t.started_at is not None]
    if not timed:
        return None
    starts = [t.started_at for t in timed if t.started_at is not None]
    ends = [t.finished_at for t in timed if t.finished_at is not None]
    start, end = min(starts), max([*ends, *starts])
    if any(t.finished_at is None and t.state == states.RUNNING for t in timed):
        end = max(end, now)
    span = max((end - start).total_seconds(), 1e-6)

    def bar(task: TaskDetail) -> Bar:
        assert task.started_at is not None
        stop = task.finished_at or end
        offset = (task.started_at - start).total_seconds()
        return Bar(task, offset, max(0.0, (stop - task.started_at).total_seconds()), stop is end)

    bars = [bar(t) for t in timed]
    if rows is not None and len(bars) > rows:
        bars = sorted(bars, key=lambda b: b.length, reverse=True)[:rows]
        bars.sort(key=lambda b: (b.offset, b.task.name))
    return Timeline(start, span, bars, len(timed))


def task_tries(task: TaskDetail) -> list[dict[str, Any]]:
    """Every try of ``task``, oldest first (``td.tries`` where stored, API.md "Tries").

    A store written before tries were recorded knows only the last one: it is
    rebuilt from the task's own fields.
    """
    stored = getattr(task, "tries", None)
    if stored:
        return [dict(entry) for entry in stored]
    if not task.attempts:
        return []
    if task.failure is not None:
        state = states.FAILURE
    elif task.state == states.RUNNING and task.finished_at is None:
        state = states.RUNNING
    elif task.finished_at is not None or task.state in states.TASK_STATES:
        state = states.SUCCESS  # ended without a failure (maybe reverted since)
    return [
        {
            "attempt": task.attempts,
            "started_at": task.started_at,
            "finished_at": task.finished_at,
            "state": state,
            "failure": task.failure,
        }
    ]


def count_states(items: Iterable[FlowDetail | TaskDetail]) -> dict[str, int]:
    """How many of ``items`` are in each state."""
    counts: dict[str, int] = {}
    for item in items:
        counts[item.state] = counts.get(item.state, 0) + 1
    return counts
