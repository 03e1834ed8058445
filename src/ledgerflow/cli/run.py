"""``ledgerflow resume``: continue a stored flow with a live progress display.

The display is fed by state-change events (``.kind``, ``.name``, ``.state``,
``.flow_uuid``, ``.task_uuid``) while ``lf.resume`` rebuilds the flow from its
stored factory and runs it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text as RichText

import ledgerflow as lf
from ledgerflow import states
from ledgerflow.cli import render
from ledgerflow.cli.app import App, fail, local_store_missing
from ledgerflow.cli.render import Text
from ledgerflow.persistence.records import check_uuid

__all__ = ["ProgressDisplay", "StoreWatcher", "resume", "resume_with_progress"]

#: The bar counts tasks that succeeded: a resumed REVERTED flow runs its tasks again.
DONE = frozenset({states.SUCCESS})
#: Task states worth a line of their own as they happen.
REPORTED = frozenset(
    {states.SUCCESS, states.FAILURE, states.RETRYING, states.RUNNING}
    | {states.REVERTED, states.REVERT_FAILURE}
)
POLL_SECONDS = 0.2


class Event(Protocol):
    """What the display needs of an engine state-change event."""

    kind: str
    name: str
    state: str
    flow_uuid: str
    task_uuid: str | None


@dataclass
class StateChange:
    """A state change observed in the store."""

    kind: str
    name: str
    state: str
    flow_uuid: str
    task_uuid: str | None


class ProgressDisplay:
    """A progress bar over a flow's tasks plus one line per notable state change."""

    def __init__(self, console: Console, flow: lf.FlowDetail) -> None:
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

    def on_change(self, event: Event) -> None:
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


class StoreWatcher:
    """Reads a flow's task states from the store and reports each change as an event.

    Works with any engine, because it only reads what the engine records.
    """

    def __init__(self, backend: lf.Backend, flow_uuid: str, callback: Any) -> None:
        self._backend = backend
        self._flow_uuid = flow_uuid
        self._callback = callback
        self._seen: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ledgerflow-watch", daemon=True)

    def prime(self, flow: lf.FlowDetail) -> None:
        """Take the states already stored as known, so only changes are reported."""
        self._seen = {task.uuid: task.state for task in flow}
        self._seen[flow.uuid] = flow.state

    def poll(self) -> None:
        """Compare the stored states with the last ones seen; report the differences."""
        with self._backend.connect() as conn:
            flow = conn.get_flow_details(self._flow_uuid)
        for task in flow:
            if self._seen.get(task.uuid) != task.state:
                self._seen[task.uuid] = task.state
                self._callback(StateChange("task", task.name, task.state, flow.uuid, task.uuid))
        if self._seen.get(flow.uuid) != flow.state:
            self._seen[flow.uuid] = flow.state
            self._callback(StateChange("flow", flow.name, flow.state, flow.uuid, None))

    def _loop(self) -> None:
        pause = POLL_SECONDS
        while not self._stop.wait(pause):
            started = time.monotonic()
            try:
                self.poll()
            except lf.LedgerflowError:
                # A transient read failure must not stop the run; the next poll retries.
                continue
            # Reading a huge flow takes a while: keep the watcher's share of the CPU small.
            pause = max(POLL_SECONDS, 3 * (time.monotonic() - started))

    @contextmanager
    def running(self) -> Iterator[StoreWatcher]:
        """Poll in a background thread for the duration of the block, then once more."""
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()
            self.poll()


def resume_with_progress(backend: lf.Backend, flow_uuid: str, console: Console) -> dict[str, Any]:
    """Resume a stored flow through ``lf.resume`` while showing its progress."""
    with backend.connect() as conn:
        flow = conn.get_flow_details(flow_uuid)
    with ProgressDisplay(console, flow) as display:
        watcher = StoreWatcher(backend, flow_uuid, display.on_change)
        watcher.prime(flow)
        with watcher.running():
            results: dict[str, Any] = lf.resume(backend, flow_uuid)
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
