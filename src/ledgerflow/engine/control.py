"""``lf.suspend`` and ``lf.cancel``: ask the owner of a flow, wherever it runs, to stop.

A request is stored in the flow row (see ``persistence.ownership``); the owner hears of
it at its next heartbeat (within a third of its lease) and stops starting tasks, while
the tasks in flight see ``ctx.stop_requested``.  Cancelling a flow nobody holds takes
it here and reverts it; the request is stored first, so a cancel cut short by a crash
still ends CANCELLED at the next resume.
"""

from __future__ import annotations

from ledgerflow import states
from ledgerflow.engine import identity
from ledgerflow.engine.api import _connect, _open, _resume_engine
from ledgerflow.errors import FlowBusy, FlowCancelled
from ledgerflow.flow import Flow
from ledgerflow.persistence.base import Backend, Connection
from ledgerflow.persistence.ownership import OwnChange, Ownership

__all__ = ["cancel", "suspend"]

#: States in which a flow can no longer be cancelled (a FAILURE flow left effects behind).
_FINISHED = frozenset({states.SUCCESS, states.REVERTED, states.FAILURE})


def _held(seen: Ownership) -> bool:
    """Whether a live engine holds the flow right now."""
    owner = seen.owner
    return owner is not None and not seen.expired and not identity.is_gone(owner, seen.flow_uuid)


def suspend(backend: Backend | str, flow_uuid: str) -> str:
    """Ask the flow's owner to suspend it; return the flow's state (nothing else changes)."""
    the_backend, owned = _open(backend)
    try:
        with the_backend.connect() as conn:
            seen = conn.get_ownership(flow_uuid)
            if seen.state not in states.ENDED and _held(seen):
                conn.change_ownership(flow_uuid, OwnChange("request", request="suspend"))
            return seen.state
    finally:
        if owned:
            the_backend.close()


def cancel(backend: Backend | str, flow_uuid: str, *, flow: Flow | None = None) -> str:
    """Ask the owner to stop and revert the flow (CANCELLED); revert it here if unowned.

    ValueError if the flow already ended SUCCESS, REVERTED or FAILURE (nothing changes),
    or if it is unowned and its factory cannot be rebuilt (nothing changes either).
    """
    the_backend, owned = _open(backend)
    try:
        with the_backend.connect() as conn:
            seen = conn.get_ownership(flow_uuid)
            if seen.state == states.CANCELLED:
                return seen.state
            if seen.state in _FINISHED:
                raise ValueError(
                    f"flow detail {flow_uuid} already ended {seen.state}: nothing to cancel"
                )
            if _held(seen):
                conn.change_ownership(flow_uuid, OwnChange("request", request="cancel"))
                return seen.state
        return _cancel_here(the_backend, flow_uuid, flow)
    finally:
        if owned:
            the_backend.close()


def _cancel_here(backend: Backend, flow_uuid: str, flow: Flow | None) -> str:
    """Take the unowned flow and revert it: CANCELLED (or whoever took it first acts)."""
    conn: Connection = _connect(backend)
    try:
        try:
            engine = _resume_engine(backend, conn, flow_uuid, flow, None, False)
        except (ImportError, AttributeError) as exc:
            raise ValueError(
                f"cannot cancel flow detail {flow_uuid} here: its factory cannot be imported "
                f"({exc}); nothing changed (pass flow=, or cancel where it can be)"
            ) from exc
    except BaseException:
        conn.close()
        raise
    conn.change_ownership(flow_uuid, OwnChange("request", request="cancel"))
    try:
        engine.run()
    except FlowCancelled:
        return states.CANCELLED
    except FlowBusy:  # someone took it meanwhile: the stored request reaches them
        pass
    with backend.connect() as probe:
        return probe.get_ownership(flow_uuid).state
