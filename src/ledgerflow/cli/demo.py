"""``ledgerflow demo``: a flow killed part-way in a child process, then resumed here.

The child runs ``demo_flow.build`` and tells the parent its flow uuid; the parent
watches the store and SIGKILLs the child in the middle of ``copy_data`` (after a
few checkpoints), then resumes the flow in-process from the stored factory and
shows the result.  Nothing is faked: the crash is a real kill of a real process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import click
from rich.text import Text

import ledgerflow as lf
from ledgerflow.cli import render
from ledgerflow.cli.app import EXIT_USAGE, App, fail
from ledgerflow.cli.commands import view
from ledgerflow.cli.run import resume_with_progress

__all__ = ["demo", "demo_child"]

#: Kill the child once copy_data has checkpointed this many chunks (of demo_flow.CHUNKS).
KILL_AT_CHUNK = 3
CHILD_TIMEOUT = 30.0
POLL_SECONDS = 0.05


@click.command("_demo-child", hidden=True)
@click.pass_obj
def demo_child(app: App) -> None:
    """Run the demo flow in this process (the parent kills it part-way)."""
    # Imported here: building the demo's tasks needs the engine, which `books` does not.
    from ledgerflow.cli import demo_flow

    engine = lf.load(
        demo_flow.FACTORY, store=dict(demo_flow.STORE), backend=app.backend_uri, book="demo"
    )
    click.echo(engine.flow_detail.uuid)
    sys.stdout.flush()
    engine.run()


@click.command()
@click.pass_obj
def demo(app: App) -> None:
    """Run a flow, kill its process part-way, resume it to SUCCESS, and show it."""
    from ledgerflow.cli import demo_flow

    if app.backend_uri.startswith("memory:"):
        fail("demo needs a store two processes can share, e.g. sqlite:///ledgerflow.db", EXIT_USAGE)
    out = app.out
    out.print(Text.assemble(("ledgerflow demo", "bold"), f"  store: {app.safe_uri}"))
    out.print(
        "1. A child process runs 'publish-dataset' (reserve → lock → copy → verify → publish);\n"
        f"   it is killed with SIGKILL while copy_data is at chunk {KILL_AT_CHUNK}/"
        f"{demo_flow.CHUNKS}."
    )
    with app.open() as backend:
        flow_uuid = _run_and_kill(app, backend, demo_flow.CHUNKS)
        with backend.connect() as conn:
            crashed = conn.get_flow_details(flow_uuid)
        out.print(Text("\nWhat the store holds after the crash:", style="bold"))
        render.emit(out, render.flow_tree(crashed, "", "", verbose=False))
        out.print(
            Text.assemble(
                ("\n2. Resuming here from the store alone: ", "bold"),
                f"lf.resume(backend, {flow_uuid!r})",
            )
        )
        results = resume_with_progress(backend, flow_uuid, out)
        with backend.connect() as conn:
            flow = conn.get_flow_details(flow_uuid, lazy=True)
            book_uuid = conn.locate(flow_uuid).book_uuid or flow_uuid
            _, lines = view(conn, book_uuid, False, out.width)
    out.print(Text(f"\n3. ledgerflow show {book_uuid}", style="bold"))
    render.emit(out, lines)
    out.print()
    summary = render.Text("flow publish-dataset ")
    summary.append_text(render.state_text(flow.state))
    summary.append(f": published {results.get('url')}; copy_data resumed at chunk ")
    summary.append(str((results.get("copied") or {}).get("resumed_at_chunk")))
    render.emit(out, [summary])
    out.print(Text(f"see it again: ledgerflow show {flow_uuid}", style="dim"))
    if flow.state != lf.states.SUCCESS:
        fail(f"the demo flow ended {flow.state}, not SUCCESS")


def _child_env() -> dict[str, str]:
    """The environment for the child: this process's, with this ledgerflow importable."""
    env = dict(os.environ)
    package_root = str(Path(lf.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    return env


def _run_and_kill(app: App, backend: lf.Backend, chunks: int) -> str:
    """Start the child, wait for copy_data's checkpoint, SIGKILL the child; return the flow."""
    child = subprocess.Popen(
        [sys.executable, "-m", "ledgerflow", "--backend", app.backend_uri, "_demo-child"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_child_env(),
    )
    try:
        assert child.stdout is not None
        flow_uuid = child.stdout.readline().strip()
        if not flow_uuid:
            child.wait(CHILD_TIMEOUT)
            error = (child.stderr.read() if child.stderr else "").strip().splitlines()
            fail(f"the demo child failed: {error[-1] if error else child.returncode}")
        chunk = _wait_for_chunk(backend, flow_uuid, child)
        if child.poll() is None:
            child.kill()
            child.wait(CHILD_TIMEOUT)
            app.out.print(
                Text.assemble(
                    (f"   ✘ killed child pid {child.pid} (SIGKILL)", "bold red"),
                    f" while copy_data was at chunk {chunk}/{chunks}",
                )
            )
        else:
            app.out.print(f"   the child ended by itself (exit {child.returncode}) before the kill")
        return flow_uuid
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()


def _wait_for_chunk(backend: lf.Backend, flow_uuid: str, child: subprocess.Popen[str]) -> int:
    """Poll the store until copy_data has checkpointed KILL_AT_CHUNK chunks (or the child ends)."""
    deadline = time.monotonic() + CHILD_TIMEOUT
    chunk = 0
    with backend.connect() as conn:
        while child.poll() is None and time.monotonic() < deadline:
            try:
                tasks = conn.get_tasks_for_flow(flow_uuid)
            except lf.NotFound:  # the child has not saved its flow yet
                tasks = []
            for task in tasks:
                if task.name == "copy_data" and task.checkpoint is not None:
                    chunk = int(task.checkpoint)
            if chunk >= KILL_AT_CHUNK:
                break
            time.sleep(POLL_SECONDS)
    return chunk
