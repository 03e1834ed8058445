"""Turning read-model views into what the templates draw: SVG bars, clipped text."""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from markupsafe import Markup

from ledgerflow import states
from ledgerflow.history import Timeline, task_tries
from ledgerflow.models import TaskDetail

__all__ = [
    "CLIP",
    "Clipped",
    "SvgBar",
    "clip",
    "duration",
    "preview",
    "svg_bars",
    "task_rows",
    "when",
]

#: Characters of a stored string shown inline; the rest is one click away.
CLIP = 2000
#: Timeline rows drawn; a bigger flow shows its longest tasks.
TIMELINE_ROWS = 200
#: Control characters shown as escapes (a stored name cannot break the page layout).
_CONTROLS = {
    code: {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(chr(code), f"\\x{code:02x}")
    for code in (*range(32), *range(127, 160))
}
_KEEP_LINES = {code: value for code, value in _CONTROLS.items() if chr(code) not in "\n\t"}
RUNNING_STATES = frozenset({states.RUNNING, states.REVERTING, states.SUSPENDING, states.PENDING})


@dataclass(frozen=True)
class Clipped:
    """Text cut to a length, and how much was left out."""

    text: str
    hidden: int


def printable(text: str, lines: bool = False) -> str:
    """``text`` with control characters as escapes (``lines``: keep newlines and tabs)."""
    return str(text).translate(_KEEP_LINES if lines else _CONTROLS)


def clip(text: str | None, limit: int = CLIP, lines: bool = False) -> Clipped:
    """The first ``limit`` characters of ``text`` (control characters escaped)."""
    if text is None:
        return Clipped("", 0)
    shown = printable(text[:limit], lines)
    return Clipped(shown, max(0, len(text) - limit))


def preview(value: Any, limit: int = CLIP) -> Clipped:
    """A JSON rendering of a stored value, clipped."""
    try:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, indent=1, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    return clip(text, limit, lines=True)


def when(value: datetime | None) -> str:
    """A UTC time to the millisecond, or '-'."""
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def duration(seconds: float | None) -> str:
    """850ms, 12.3s, 3m05s, 2h03m."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


@dataclass(frozen=True)
class SvgBar:
    """One timeline row: position and width in percent of the axis, and its task."""

    y: int
    x: float
    width: float
    name: str
    state: str
    uuid: str
    label: str


def svg_bars(drawn: Timeline | None, row_height: int = 16) -> list[SvgBar]:
    """Rows of the flow's SVG timeline."""
    if drawn is None:
        return []
    bars = []
    for row, bar in enumerate(drawn.bars):
        x = bar.offset / drawn.span * 100
        width = max(0.3, bar.length / drawn.span * 100)
        label = f"{bar.task.name}: {bar.task.state}, {duration(bar.length)}"
        bars.append(
            SvgBar(
                row * row_height,
                round(min(x, 99.7), 3),
                round(min(width, 100 - min(x, 99.7)), 3),
                printable(bar.task.name),
                bar.task.state,
                bar.task.uuid,
                printable(label + (" (still open)" if bar.open_ended else "")),
            )
        )
    return bars


def _esc(value: object) -> str:
    """HTML-escaped text (quotes too): what autoescape does, at a fraction of the cost."""
    return html.escape(str(value), quote=True)


def _state(state: str) -> str:
    return f'<span class="state s-{_esc(state)}">{_esc(state)}</span>'


def _tries_cell(task: TaskDetail) -> str:
    tries = task_tries(task)
    if not tries:
        return '<span class="muted">-</span>'
    cells = []
    for entry in tries:
        failure = entry.get("failure")
        title = printable(failure.message)[:200] if failure is not None else ""
        cells.append(
            f'<span title="{_esc(title)}">{_esc(entry.get("attempt"))}&nbsp;'
            f"{_state(str(entry.get('state')))}</span>"
        )
    return ", ".join(cells)


def _outcome_cell(task: TaskDetail) -> str:
    if task.checkpoint is not None and task.state != states.SUCCESS:
        return f"checkpoint {_esc(preview(task.checkpoint, 120).text)}"
    return "" if task.result is None else _esc(preview(task.result, 120).text)


def task_rows(tasks: Iterable[TaskDetail]) -> Markup:
    """The flow page's task table rows, every stored string escaped.

    Built here rather than in the template: a flow of 10,000 tasks rendered through
    Jinja took most of the page's time (a macro call and a dozen escapes per row).
    """
    rows = []
    for task in tasks:
        took = None
        if task.started_at is not None and task.finished_at is not None:
            took = (task.finished_at - task.started_at).total_seconds()
        rows.append(
            f'<tr><td><a href="/tasks/{quote(task.uuid, safe="")}">'
            f"{_esc(printable(task.name))}</a></td>"
            f"<td>{_state(task.state)}</td><td>{_tries_cell(task)}</td>"
            f'<td class="mono">{when(task.started_at)}</td><td>{duration(took)}</td>'
            f'<td class="mono">{_outcome_cell(task)}</td></tr>'
        )
    return Markup("\n".join(rows))
