"""Turn books, flows and tasks into styled lines: the tree and the timeline.

Lines are lists of (text, style) pieces written straight to the console's file
(with the ANSI codes of each style, when the console has colour): rich's own
rendering of 10,000 ``Text`` lines takes over a second, this a few milliseconds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from rich.color import ColorSystem
from rich.console import Console
from rich.style import Style

import ledgerflow as lf
from ledgerflow import history, states
from ledgerflow.corrupt import in_place
from ledgerflow.history import BookSummary, BookView, Corrupt

STATE_STYLES: dict[str, str] = {
    states.PENDING: "dim",
    states.RUNNING: "bold yellow",
    states.SUCCESS: "green",
    states.FAILURE: "bold red",
    states.RETRYING: "yellow",
    states.REVERTING: "magenta",
    states.REVERTED: "magenta",
    states.REVERT_FAILURE: "bold red",
    states.SUSPENDING: "blue",
    states.SUSPENDED: "blue",
    states.CANCELLED: "magenta",
}
STATE_ICONS: dict[str, str] = {
    states.PENDING: "·",
    states.RUNNING: "▶",
    states.SUCCESS: "✔",
    states.FAILURE: "✘",
    states.RETRYING: "↻",
    states.REVERTING: "↶",
    states.REVERTED: "↶",
    states.REVERT_FAILURE: "✘",
    states.SUSPENDING: "⏸",
    states.SUSPENDED: "⏸",
    states.CANCELLED: "⊘",
}
_COLOR_SYSTEMS = {
    "standard": ColorSystem.STANDARD,
    "256": ColorSystem.EIGHT_BIT,
    "truecolor": ColorSystem.TRUECOLOR,
    "windows": ColorSystem.WINDOWS,
}


#: Control characters shown as escapes: a newline in a stored name must not break
#: "one line per book", and an escape sequence must not reach the terminal.
_CONTROLS = {
    code: {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(chr(code), f"\\x{code:02x}")
    for code in (*range(32), *range(127, 160))
}


def printable(text: str) -> str:
    """``text`` with control characters (newlines included) written as escapes."""
    return text.translate(_CONTROLS)


class Text:
    """A line of (text, style) pieces; a small, fast stand-in for rich's ``Text``."""

    __slots__ = ("pieces",)

    def __init__(self, text: str = "", style: str = "") -> None:
        self.pieces: list[tuple[str, str]] = [(printable(text), style)] if text else []

    def append(self, text: str, style: str = "") -> Text:
        """Add a piece (control characters escaped); return self."""
        self.pieces.append((printable(text), style))
        return self

    def append_text(self, other: Text) -> Text:
        """Add every piece of ``other``; return self."""
        self.pieces.extend(other.pieces)
        return self

    @property
    def plain(self) -> str:
        """The text without styles."""
        return "".join(text for text, _ in self.pieces)


def at_a_terminal(console: Console) -> bool:
    """Whether the console writes to a terminal; FORCE_COLOR (colour in CI logs) does not count."""
    isatty = getattr(console.file, "isatty", None)
    return bool(isatty and isatty()) or os.environ.get("TTY_COMPATIBLE") == "1"


def emit(console: Console, lines: Iterable[Text]) -> None:
    """Write ``lines`` to the console's file, coloured if the console has colour."""
    color_system = _COLOR_SYSTEMS.get(console.color_system or "")
    if color_system is None or console.no_color:
        out = "\n".join(line.plain for line in lines)
    else:
        codes: dict[str, tuple[str, str]] = {}
        rendered = []
        for line in lines:
            parts = []
            for text, style in line.pieces:
                if not style:
                    parts.append(text)
                    continue
                if style not in codes:
                    before, _, after = (
                        Style.parse(style).render("\0", color_system=color_system).partition("\0")
                    )
                    codes[style] = (before, after)
                before, after = codes[style]
                parts.append(before + text + after)
            rendered.append("".join(parts))
        out = "\n".join(rendered)
    console.file.write(out + "\n")
    console.file.flush()


#: Timeline rows drawn at most; a bigger flow shows its longest tasks.
TIMELINE_ROWS = 40
PREVIEW_CHARS = 48


def state_text(state: str) -> Text:
    """The state name in its colour."""
    return Text(state, style=STATE_STYLES.get(state, ""))


def format_duration(seconds: float | None) -> str:
    """A short human duration: 850ms, 12.3s, 3m05s, 2h03m."""
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_time(value: datetime | None) -> str:
    """A UTC timestamp to the second, or '-'."""
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def preview(value: Any, limit: int = PREVIEW_CHARS) -> str:
    """A one-line JSON preview of a result, cut at ``limit`` characters."""
    try:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def task_duration(task: lf.TaskDetail) -> float | None:
    """Seconds between started_at and finished_at, None unless both are known."""
    if task.started_at is None or task.finished_at is None:
        return None
    return max(0.0, (task.finished_at - task.started_at).total_seconds())


def flow_duration(tasks: Iterable[lf.TaskDetail]) -> float | None:
    """Seconds from the first task start to the last task finish."""
    starts = [t.started_at for t in tasks if t.started_at is not None]
    ends = [t.finished_at for t in tasks if t.finished_at is not None]
    if not starts or not ends:
        return None
    return max(0.0, (max(ends) - min(starts)).total_seconds())


def state_counts_text(counts: Mapping[str, int]) -> Text:
    """'3 SUCCESS, 1 FAILURE' with each state in its colour."""
    text = Text()
    for index, (state, count) in enumerate(sorted(counts.items())):
        if index:
            text.append(", ")
        text.append(f"{count} ")
        text.append(state, style=STATE_STYLES.get(state, ""))
    return text if counts else Text("no tasks", style="dim")


BOOK_HEADER = f"{'UUID':36}  {'CREATED (UTC)':19}  NAME  FLOWS  TASKS"


def book_line(item: BookSummary) -> Text:
    """One line for a book in a listing: uuid, created, name, flow states, task states."""
    book = item.book
    line = Text(f"{book.uuid:36}  ")
    line.append(book.created_at.strftime("%Y-%m-%d %H:%M:%S"), style="dim")
    line.append("  ")
    line.append(book.name, style="cyan")
    line.append("  ")
    if item.corrupt is not None:  # its counts are not known: say why instead
        return line.append_text(corrupt_text(item.corrupt.message))
    flows = item.flow_states
    if len(flows) == 1 and sum(flows.values()) == 1:
        line.append_text(state_text(next(iter(flows))))
    elif flows:
        line.append_text(state_counts_text(flows))
        line.append(" flows")
    else:
        line.append("no flows", style="dim")
    if item.orphaned:
        line.append(f" ({item.orphaned} RUNNING with its owner gone)", style="bold red")
    line.append("  ")
    line.append_text(state_counts_text(item.task_states))
    return line


def corrupt_text(message: str, prefix: str = "") -> Text:
    """A line (after ``prefix``) for a record that does not load, naming it."""
    return Text(prefix).append(f"CORRUPT  {message}", style="bold red")


def book_header(book: lf.LogBook | Corrupt) -> Text:
    """The first line of a book: name, uuid, creation time (or why it does not load)."""
    text = Text("book ", style="bold")
    if isinstance(book, Corrupt):
        return text.append_text(corrupt_text(book.message))
    text.append(book.name, style="bold cyan")
    text.append(f"  {book.uuid}", style="dim")
    text.append(f"  created {format_time(book.created_at)}", style="dim")
    return text


def flow_line(flow: lf.FlowDetail, prefix: str, with_tasks: bool = True) -> Text:
    """One line for a flow: name, state, task counts and duration (``with_tasks``), uuid."""
    text = Text(prefix)
    text.append("flow ", style="bold")
    text.append(flow.name, style="bold")
    text.append("  ")
    text.append_text(state_text(flow.state))
    if with_tasks:
        counts: dict[str, int] = {}
        for task in flow:
            counts[task.state] = counts.get(task.state, 0) + 1
        text.append(f"  {len(flow)} tasks: ")
        text.append_text(state_counts_text(counts))
        duration = flow_duration(flow)
        if duration is not None:
            text.append(f"  {format_duration(duration)}")
    text.append(f"  {flow.uuid}", style="dim")
    text.append_text(owner_text(flow))
    return text


def owner_text(flow: lf.FlowDetail) -> Text:
    """Who holds the flow and until when; a RUNNING flow nobody runs any more is marked."""
    lease = history.lease_of(flow)
    text = Text(f"  fence {lease.fence}", style="dim")
    if lease.owner is not None:
        text.append(f"  owner {printable(lease.owner)}", style="dim")
        text.append(f" lease until {format_time(lease.expires_at)}", style="dim")
    if flow.state in (states.RUNNING, states.REVERTING) and lease.status != "held":
        text.append("  owner gone: resume it", style="bold red")
    return text


def task_lines(task: lf.TaskDetail, prefix: str, cont: str, verbose: bool) -> list[Text]:
    """A task's line, then its failure messages (tracebacks and causes with ``verbose``)."""
    text = Text(prefix)
    text.append(STATE_ICONS.get(task.state, "?") + " ", style=STATE_STYLES.get(task.state, ""))
    text.append(task.name)
    text.append("  ")
    text.append_text(state_text(task.state))
    if task.attempts:
        text.append(f"  {task.attempts} attempt{'s' if task.attempts > 1 else ''}", style="dim")
    duration = task_duration(task)
    if duration is not None:
        text.append(f"  {format_duration(duration)}")
    if task.result is not None and task.failure is None:
        text.append(f"  → {preview(task.result)}", style="cyan")
    if task.checkpoint is not None and task.state != states.SUCCESS:
        text.append(f"  checkpoint {preview(task.checkpoint)}", style="yellow")
    if verbose:
        text.append(f"  {task.uuid}", style="dim")
    lines = [text]
    if verbose:
        lines.extend(try_lines(task.tries, cont + "    "))
    for label, failure in (("failure", task.failure), ("revert failure", task.revert_failure)):
        if failure is not None:
            lines.extend(failure_lines(label, failure, cont + "    ", verbose))
    return lines


def try_lines(tries: list[dict[str, Any]], indent: str) -> list[Text]:
    """One line per try: attempt, state, start, duration, the wait before it, its failure."""
    lines = []
    previous_end: datetime | None = None
    for entry in tries:
        state = str(entry.get("state"))
        started, finished = entry.get("started_at"), entry.get("finished_at")
        line = Text(f"{indent}try {entry.get('attempt')}  ", style="dim")
        line.append_text(state_text(state))
        line.append(f"  started {format_time(started)}", style="dim")
        if started is not None and finished is not None:
            line.append(f"  {format_duration(max(0.0, (finished - started).total_seconds()))}")
        if started is not None and previous_end is not None:
            waited = max(0.0, (started - previous_end).total_seconds())
            line.append(f"  after a {format_duration(waited)} wait", style="dim")
        failure = entry.get("failure")
        if failure is not None:
            line.append(f"  {(str(failure).splitlines() or [''])[0]}", style="red")
        lines.append(line)
        previous_end = finished
    return lines


def failure_lines(label: str, failure: lf.Failure, indent: str, verbose: bool) -> list[Text]:
    """The failure's message; with ``verbose`` its traceback and its chain of causes."""
    first, *more = f"{label}: {failure}".splitlines() or [label]
    lines = [Text(indent).append(first, style="red")]
    lines.extend(Text(indent + "  ").append(line, style="red") for line in more)
    if not verbose:
        return lines
    for current_label, current in [(label, failure), *(("caused by", c) for c in failure.causes())]:
        if current is not failure:
            lines.append(Text(indent).append(f"{current_label}: {current}", style="red"))
        for tb_line in current.traceback_str.rstrip().splitlines():
            lines.append(Text(indent + "  " + tb_line, style="dim"))
    return lines


def flow_tree(
    flow: lf.FlowDetail, prefix: str, cont: str, verbose: bool, corrupt: Iterable[Corrupt] = ()
) -> list[Text]:
    """A flow's line and one branch per task (a ``corrupt`` one marked, in its place)."""
    lines = [flow_line(flow, prefix)]
    tasks = in_place(flow.tasks, corrupt)
    for index, task in enumerate(tasks):
        last = index == len(tasks) - 1
        branch, below = ("└── ", "    ") if last else ("├── ", "│   ")
        if isinstance(task, Corrupt):
            lines.append(corrupt_text(task.message, cont + branch))
        else:
            lines.extend(task_lines(task, cont + branch, cont + below, verbose))
    return lines


def book_tree(found: BookView, verbose: bool) -> list[Text]:
    """A book's header and the tree of its flows and tasks, each corrupt one marked."""
    book = found.book
    lines = [book_header(book)]
    flows = in_place(book.flows, found.corrupt_under(book.uuid))
    if not flows:
        lines.append(Text("└── (no flows)", style="dim"))
    for index, flow in enumerate(flows):
        last = index == len(flows) - 1
        branch, below = ("└── ", "    ") if last else ("├── ", "│   ")
        if isinstance(flow, Corrupt):
            lines.append(corrupt_text(flow.message, branch))
        else:
            lines.extend(flow_tree(flow, branch, below, verbose, found.corrupt_under(flow.uuid)))
    return lines


def timeline(tasks: list[lf.TaskDetail], width: int, now: datetime) -> list[Text]:
    """One bar per task on a shared time axis, so a slow or stuck task stands out.

    Tasks never started are left out; a task still RUNNING (or whose process died)
    draws to the end of the axis.  Past ``TIMELINE_ROWS`` tasks only the longest
    are drawn, in start order (``history.timeline`` decides what is drawn).
    """
    drawn = history.timeline(tasks, now, TIMELINE_ROWS)
    if drawn is None:
        return []
    span = drawn.span
    name_width = min(24, max(len(bar.task.name) for bar in drawn.bars))
    bar_width = max(20, width - name_width - 12)
    title = Text("timeline", style="bold")
    title.append(f"  {format_time(drawn.start)} → +{format_duration(span)}", style="dim")
    if len(drawn.bars) < drawn.total:
        title.append(f"  ({len(drawn.bars)} longest of {drawn.total} tasks)", style="dim")
    lines = [title]
    for bar in drawn.bars:
        task = bar.task
        first = min(int(bar.offset / span * bar_width), bar_width - 1)
        last = int((bar.offset + bar.length) / span * bar_width)
        cells = max(1, last - first)
        label = task.name if len(task.name) <= name_width else task.name[: name_width - 1] + "…"
        line = Text(label.ljust(name_width) + " ")
        line.append(" " * first)
        line.append("█" * cells, style=STATE_STYLES.get(task.state, ""))
        line.append(" " * max(0, bar_width - first - cells) + " ")
        open_ended = "…" if task.finished_at is None else ""
        line.append(format_duration(bar.length) + open_ended)
        lines.append(line)
    return lines
