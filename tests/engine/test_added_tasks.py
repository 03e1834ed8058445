"""Tasks a resume adds (a job's flow is posted without them) are stored by the run's commits.

Once the flow is taken they go in with the flow's next fenced write (no commit of their
own): under every save policy, before a checkpoint returns, and never by a refused run.
"""

from __future__ import annotations

from typing import Any

import pytest

import ledgerflow as lf
from ledgerflow import states
from ledgerflow.models import FlowDetail, LogBook
from ledgerflow.persistence.ownership import OwnChange

FACTORY = f"{__name__}:checkpointing"


@lf.task(provides="saved")
def save_half(uri: str) -> str:
    """Checkpoint, then look from another connection: the task row holds the checkpoint."""
    context = lf.current_task()
    context.checkpoint("half")
    with lf.open_backend(uri) as backend, backend.connect() as conn:
        return str(conn.get_task_details(context.task_uuid).checkpoint)


@lf.task(provides="doubled")
def double(n: int) -> int:
    """Double ``n``."""
    return n * 2


def checkpointing() -> lf.Flow:
    """A checkpointing task, then a plain one."""
    return lf.LinearFlow("checkpointing", save_half, double)


def _posted(backend: lf.Backend, store: dict[str, Any], save: str) -> str:
    """A flow detail stored as a board's post stores it: factory and store, no tasks."""
    book = LogBook("posted")
    flow = FlowDetail("posted", meta={"factory": FACTORY, "store": store, "save": save})
    book.add(flow)
    with backend.connect() as conn:
        conn.save_logbook(book)
    return flow.uuid


@pytest.mark.parametrize("save", ["always", "batched", "final"])
@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_added_tasks_are_stored_by_the_runs_own_commits(
    kind: str, save: str, request: pytest.FixtureRequest, tmp_path: Any
) -> None:
    from tests.conftest import backend_uri

    uri = backend_uri(kind, request, tmp_path)
    with lf.open_backend(uri) as backend:
        with backend.connect() as conn:
            conn.upgrade()
        flow_uuid = _posted(backend, {"uri": uri, "n": 3}, save)
        # The checkpoint was durable, task row and all, before checkpoint() returned.
        assert lf.resume(backend, flow_uuid) == {"saved": "half", "doubled": 6}
        with backend.connect() as conn:
            flow = conn.get_flow_details(flow_uuid)
    assert flow.state == states.SUCCESS and flow.owner is None
    assert [(td.name, td.state, td.attempts) for td in flow] == [
        ("save_half", states.SUCCESS, 1),
        ("double", states.SUCCESS, 1),
    ]
    assert [td.result for td in flow] == ["half", 6]


def test_a_refused_resume_stores_no_task(backend: lf.Backend) -> None:
    flow_uuid = _posted(backend, {"uri": "unused", "n": 1}, "always")
    with backend.connect() as conn:
        fence = conn.get_ownership(flow_uuid).fence
        taken = OwnChange("take", fence, "elsewhere:1:1", 60.0)
        assert conn.change_ownership(flow_uuid, taken)
    with pytest.raises(lf.FlowBusy):
        lf.resume(backend, flow_uuid)
    with backend.connect() as conn:
        assert list(conn.get_flow_details(flow_uuid)) == []
