"""``ledgerflow suspend UUID`` and ``ledgerflow cancel UUID``: ask a flow's owner to stop."""

from __future__ import annotations

import click

import ledgerflow as lf
from ledgerflow import states
from ledgerflow.cli.app import App, fail, local_store_missing
from ledgerflow.persistence.records import check_uuid

__all__ = ["cancel", "suspend"]


def _missing(app: App, flow_uuid: str) -> None:
    check_uuid(flow_uuid, "flow uuid")
    if local_store_missing(app.backend_uri):
        fail(f"no flow detail with uuid {flow_uuid!r}: {app.safe_uri} does not exist")


@click.command()
@click.argument("flow_uuid")
@click.pass_obj
def suspend(app: App, flow_uuid: str) -> None:
    """Ask the engine running a flow (in any process, on any host) to suspend it."""
    _missing(app, flow_uuid)
    with app.open() as backend:
        state = lf.suspend(backend, flow_uuid)
    if state in states.ENDED:
        fail(f"flow detail {flow_uuid} already ended {state}: nothing to suspend")
    if state in (states.SUSPENDED, states.PENDING):
        app.out.print(f"flow {flow_uuid} is {state} and nobody runs it: nothing to suspend")
        return
    app.out.print(f"asked the owner of flow {flow_uuid} to suspend it (it is {state})")


@click.command()
@click.argument("flow_uuid")
@click.pass_obj
def cancel(app: App, flow_uuid: str) -> None:
    """Cancel a flow: its owner (or this command, if nobody runs it) reverts it."""
    _missing(app, flow_uuid)
    with app.open() as backend:
        state = lf.cancel(backend, flow_uuid)
    if state == states.CANCELLED:
        app.out.print(f"flow {flow_uuid} is CANCELLED")
    else:
        app.out.print(f"asked the owner of flow {flow_uuid} to cancel it (it is {state})")
