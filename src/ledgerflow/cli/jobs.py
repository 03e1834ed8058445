"""``ledgerflow jobs`` (list, post, show, cancel, retry) and ``ledgerflow conductor``.

``--board`` (or ``$LEDGERFLOW_BOARD``) defaults to the backend's URI; the logbooks are
always in ``--backend``.  Reading commands open the board without creating anything:
on a store without job tables they print an empty list.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import click

from ledgerflow.cli.app import App, fail, local_store_missing
from ledgerflow.jobs import JOB_STATES, Job, JobBoard, open_board
from ledgerflow.jobs.open import board_scheme

__all__ = ["conductor", "jobs"]

BOARD_ENV = "LEDGERFLOW_BOARD"

_board_option = click.option(
    "--board",
    "board_uri",
    metavar="URI",
    envvar=BOARD_ENV,
    default=None,
    help=f"Where the jobs live (or ${BOARD_ENV}); default: the backend's URI.",
)


@contextlib.contextmanager
def _open(app: App, board_uri: str | None, *, create: bool) -> Iterator[JobBoard | None]:
    """The board (None: a reading command on a store that does not exist yet)."""
    uri = board_uri or app.backend_uri
    scheme = board_scheme(uri)
    if not create and scheme not in ("redis", "memory") and local_store_missing(uri):
        yield None
        return
    backend = None if uri == app.backend_uri else app.backend_uri
    board = open_board(uri, backend=backend, create=create)
    try:
        yield board
    finally:
        board.close()


def _line(job: Job) -> str:
    attempts = f"{job.attempts}/{job.max_attempts}"
    return f"{job.uuid}  {job.state:<9}  prio {job.priority:<4}  tries {attempts:<5}  {job.name}"


def _print_job(app: App, job: Job, as_json: bool) -> None:
    if as_json:
        app.out.print(json.dumps(job.to_dict(), indent=2), soft_wrap=True)
        return
    for name, value in job.to_dict().items():
        app.out.print(f"{name:<13} {value if value is not None else '-'}")


@click.group("jobs", invoke_without_command=True)
@_board_option
@click.option("--state", type=click.Choice(JOB_STATES), default=None, help="Only jobs in it.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of job.to_dict().")
@click.pass_context
def jobs(ctx: click.Context, board_uri: str | None, state: str | None, as_json: bool) -> None:
    """List the board's jobs, newest first; or post, show, cancel or retry one."""
    ctx.ensure_object(App)
    ctx.meta["board_uri"] = board_uri
    if ctx.invoked_subcommand is not None:
        return
    app: App = ctx.obj
    with _open(app, board_uri, create=False) as board:
        found = [] if board is None else board.jobs(state=state)
    if as_json:
        app.out.print(json.dumps([job.to_dict() for job in found], indent=2), soft_wrap=True)
        return
    if not found:
        app.out.print("no jobs" + (f" in state {state}" if state else ""))
    for job in found:
        app.out.print(_line(job))


def _board_uri(ctx: click.Context, own: str | None) -> str | None:
    parent = ctx.parent.meta.get("board_uri") if ctx.parent is not None else None
    return own or parent


@jobs.command("post")
@click.argument("factory")
@_board_option
@click.option("--store", "store_json", metavar="JSON", default=None, help="The flow's store.")
@click.option("--key", default=None, help="De-duplicate: while a job with it is unfinished.")
@click.option("--priority", type=int, default=0, show_default=True)
@click.option("--delay", type=float, default=0.0, show_default=True, help="Seconds.")
@click.option("--name", default=None, help="Default: the factory path.")
@click.option("--max-attempts", type=int, default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def post(
    ctx: click.Context,
    factory: str,
    board_uri: str | None,
    store_json: str | None,
    key: str | None,
    priority: int,
    delay: float,
    name: str | None,
    max_attempts: int,
    as_json: bool,
) -> None:
    """Post a job that runs FACTORY ('package.module:function')."""
    app: App = ctx.obj
    store: Any = None
    if store_json is not None:
        try:
            store = json.loads(store_json)
        except json.JSONDecodeError as error:
            fail(f"--store is not JSON: {error}", 2)
        if not isinstance(store, dict):
            fail("--store must be a JSON object", 2)
    with _open(app, _board_uri(ctx, board_uri), create=True) as board:
        assert board is not None
        try:
            job = board.post(
                factory,
                store=store,
                key=key,
                priority=priority,
                delay=delay,
                name=name,
                max_attempts=max_attempts,
            )
        except (TypeError, ValueError) as error:
            fail(str(error), 2)
    if as_json:
        _print_job(app, job, True)
    else:
        app.out.print(f"posted {_line(job)}")


def _one(action: str) -> Any:
    @jobs.command(action)
    @click.argument("job_uuid")
    @_board_option
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_context
    def command(ctx: click.Context, job_uuid: str, board_uri: str | None, as_json: bool) -> None:
        app: App = ctx.obj
        with _open(app, _board_uri(ctx, board_uri), create=False) as board:
            if board is None:
                fail(f"no job with uuid {job_uuid!r} (the store does not exist)")
            if action == "show":
                job = board.get(job_uuid)
            else:
                try:
                    job = board.cancel(job_uuid) if action == "cancel" else board.retry(job_uuid)
                except ValueError as error:
                    fail(str(error))
        _print_job(app, job, as_json)

    command.__doc__ = {
        "show": "Show one job.",
        "cancel": "Cancel a job: READY now; CLAIMED once its flow is cancelled.",
        "retry": "Make a FAILED or CANCELLED job READY again, its flow from the start.",
    }[action]
    return command


show_job, cancel_job, retry_job = _one("show"), _one("cancel"), _one("retry")


@click.command("conductor")
@_board_option
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--lease", type=float, default=15.0, show_default=True, help="Seconds.")
@click.option("--poll", type=float, default=1.0, show_default=True, help="Seconds.")
@click.option("--name", default=None, help="A name for this conductor's owner id.")
@click.option(
    "--allow",
    multiple=True,
    metavar="MOD",
    help="Module (or prefix ending in '.') whose factories may run; repeatable. "
    "Without it, whoever can write the board chooses what code runs here.",
)
@click.option("--until-idle", is_flag=True, help="Return once no job is left to claim.")
@click.pass_obj
def conductor(
    app: App,
    board_uri: str | None,
    workers: int,
    lease: float,
    poll: float,
    name: str | None,
    allow: tuple[str, ...],
    until_idle: bool,
) -> None:
    """Claim jobs from the board and run their flows (SIGTERM / Ctrl-C stop gracefully)."""
    from ledgerflow.jobs.conductor import Conductor

    def finished(job: Job, state: str) -> None:
        app.out.print(f"{state:<9} {job.uuid}  {job.name}")

    with _open(app, board_uri, create=True) as board:
        assert board is not None
        try:
            the_conductor = Conductor(
                board,
                name=name,
                workers=workers,
                lease=lease,
                poll=poll,
                allow=allow or None,
                on_finish=finished,
            )
        except (TypeError, ValueError) as error:
            fail(str(error), 2)
        the_conductor.run(until_idle=until_idle)
    counts = ", ".join(f"{n} {state}" for state, n in sorted(the_conductor.counts.items()))
    app.out.print(f"conductor {the_conductor.owner} stopped: {counts or 'no jobs'}")
