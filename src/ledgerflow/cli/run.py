"""``ledgerflow resume``: continue a stored flow with a live progress display.

The display is fed by the engine's state-change events (``.kind``, ``.name``,
``.state``, ``.flow_uuid``, ``.task_uuid``, through ``on_change``) while
``lf.resume`` rebuilds the flow from its stored factory and runs it.
"""

from __future__ import annotations

import threading
from typing import Any

import click
from rich.console import Console
from rich.text import Text as RichText

import ledgerflow as lf
from ledgerflow import states
from ledgerflow.cli import render
from ledgerflow.cli.app import App, fail, local_store_missing
from ledgerflow.cli.render import Text
from ledgerflow.history import check_uuid

__all__ = ["ProgressDisplay", "resume", "resume_with_progress"]

#: The bar counts tasks that succeeded: a resumed REVERTED flow runs its tasks again.
DONE = frozenset({states.SUCCESS})
#: Task states worth a line of their own as they happen.
REPORTED = frozenset(
    {states.SUCCESS, states.FAILURE, states.RETRYING, states.RUNNING}
    | {states.REVERTED, states.REVERT_FAILURE}
)


class ProgressDisplay:
    """A progress bar over a flow's tasks plus one line per notable state change."""

    def __init__(self, console: Console, flow: lf.FlowDetail) -> None:
        # Imported here: rich.progress is heavy and only resume needs it.
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._console = console
        self._lock = threading.Lock()
        self._states = {task.uuid: task.state for task in flow}
        self._progress = Progress(
            TextColumn("{task.description}", style="bold", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._bar = self._progress.add_task(flow.name, total=len(flow), completed=self._done())

    def _done(self) -> int:
        return sum(state in DONE for state in self._states.values())

    def __enter__(self) -> ProgressDisplay:
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def on_change(self, event: lf.StateChange) -> None:
        """Record one flow or task state change (safe to call from any thread)."""
        with self._lock:
            if event.kind == "task" and event.task_uuid is not None:
                if self._states.get(event.task_uuid) == event.state:
                    return
                self._states[event.task_uuid] = event.state
                total = max(len(self._states), self._progress.tasks[0].total or 0)
                self._progress.update(self._bar, completed=self._done(), total=total)
                if event.state not in REPORTED:
                    return
            line = Text(f"{render.STATE_ICONS.get(event.state, '?')} {event.kind} {event.name} ")
            line.append_text(render.state_text(event.state))
            self._progress.console.print(RichText.assemble(*line.pieces))


def resume_with_progress(backend: lf.Backend, flow_uuid: str, console: Console) -> dict[str, Any]:
    """Resume a stored flow through ``lf.resume`` while showing its progress.

    The engine's own state-change events feed the display (``on_change``), so the
    progress costs no reads of the store.
    """
    with backend.connect() as conn:
        flow = conn.get_flow_details(flow_uuid)
    with ProgressDisplay(console, flow) as display:
        results: dict[str, Any] = lf.resume(backend, flow_uuid, on_change=display.on_change)
    return results


@click.command()
@click.argument("flow_uuid")
@click.pass_obj
def resume(app: App, flow_uuid: str) -> None:
    """Resume a stored flow from where it stopped, rebuilding it from its stored factory."""
    check_uuid(flow_uuid, "flow uuid")
    if local_store_missing(app.backend_uri):
        fail(f"no flow detail with uuid {flow_uuid!r}: {app.safe_uri} does not exist")
    with app.open() as backend:
        results = resume_with_progress(backend, flow_uuid, app.err)
        with backend.connect() as conn:
            flow = conn.get_flow_details(flow_uuid, lazy=True)
    line = Text(f"flow {flow.name} ")
    line.append_text(render.state_text(flow.state))
    line.append(f"  {flow_uuid}", style="dim")
    lines = [line]
    lines.extend(
        Text(f"  {symbol} = {render.preview(value, 200)}") for symbol, value in results.items()
    )
    lines.append(Text(f"details: ledgerflow show {flow_uuid}", style="dim"))
    render.emit(app.out, lines)
