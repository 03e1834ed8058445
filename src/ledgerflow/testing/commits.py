"""``commit_details``: an engine's first and last commits carry what used to take their own.

``BackendConformance`` inherits these checks; each takes the ``conn`` fixture.  The
tasks a resume added are inserted with the flow's fenced write, and the write that ends
the flow lets go of it, both under the fence: a stale engine writes none of it.
"""

from __future__ import annotations

import pytest

from ledgerflow.errors import ConflictError, FencedOut, NotFound
from ledgerflow.models import FlowDetail, LogBook, TaskDetail
from ledgerflow.persistence.base import Connection
from ledgerflow.persistence.ownership import OwnChange

__all__ = ["CommitChecks"]


def _taken_flow(conn: Connection, owner: str = "h:1:1") -> FlowDetail:
    """A stored flow of tasks "a" and "b", taken by ``owner`` (fence 1)."""
    book, flow = LogBook("committed"), FlowDetail("committed")
    flow.add(TaskDetail("a"))
    flow.add(TaskDetail("b"))
    book.add(flow)
    conn.save_logbook(book)
    assert conn.change_ownership(flow.uuid, OwnChange("take", 0, owner, 30.0))
    return flow


def _added(flow: FlowDetail, name: str) -> TaskDetail:
    task = TaskDetail(name)
    flow.add(task)
    return task


def _release(fence: int, *, clear_cancel: bool = True) -> OwnChange:
    return OwnChange("release", fence, clear_cancel=clear_cancel)


class CommitChecks:
    """Fenced commits that insert added tasks and let go of the flow."""

    def test_commit_details_inserts_added_tasks_with_the_flow(self, conn: Connection) -> None:
        flow = _taken_flow(conn)
        first = flow.tasks[0]
        added = _added(flow, "c")
        added.state = first.state = "RUNNING"
        flow.state = "RUNNING"
        conn.commit_details(flow, first, fence=(flow.uuid, 1), new=[added])
        assert (flow.revision, first.revision, added.revision) == (2, 2, 1)
        stored = conn.get_flow_details(flow.uuid)
        assert [(td.name, td.state, td.revision) for td in stored] == [
            ("a", "RUNNING", 2),
            ("b", "PENDING", 1),
            ("c", "RUNNING", 1),
        ]
        assert stored.state == "RUNNING"
        assert conn.get_ownership(flow.uuid).owner == "h:1:1"  # no release asked: still held

    def test_the_commit_that_ends_a_flow_lets_go_of_it(self, conn: Connection) -> None:
        flow = _taken_flow(conn)
        assert conn.change_ownership(flow.uuid, OwnChange("request", request="cancel"))
        flow.state = "SUCCESS"
        conn.commit_details(flow, fence=(flow.uuid, 1), release=_release(1))
        seen = conn.get_ownership(flow.uuid)
        assert (seen.owner, seen.fence, seen.lease_expires_at, seen.request) == (
            None,
            1,
            None,
            None,
        )
        assert conn.get_flow_details(flow.uuid).state == "SUCCESS"
        assert flow.revision == 2

    def test_a_release_keeps_a_cancel_unless_told_to_clear_it(self, conn: Connection) -> None:
        flow = _taken_flow(conn)
        assert conn.change_ownership(flow.uuid, OwnChange("request", request="cancel"))
        flow.state = "SUSPENDED"
        task = flow.tasks[1]
        task.state = "SUCCESS"
        conn.commit_details(
            task, flow, fence=(flow.uuid, 1), release=_release(1, clear_cancel=False)
        )
        seen = conn.get_ownership(flow.uuid)
        assert (seen.owner, seen.request) == (None, "cancel")
        assert conn.get_task_details(task.uuid).state == "SUCCESS"

    def test_a_release_alone_or_with_tasks_only(self, conn: Connection) -> None:
        flow = _taken_flow(conn)
        task = flow.tasks[0]
        task.state = "SUCCESS"
        conn.commit_details(task, fence=(flow.uuid, 1), release=_release(1))
        assert conn.get_ownership(flow.uuid).owner is None
        assert conn.get_task_details(task.uuid).state == "SUCCESS"
        assert conn.change_ownership(flow.uuid, OwnChange("take", 1, "h:2:2", 30.0))
        conn.commit_details(fence=(flow.uuid, 2), release=_release(2))
        assert conn.get_ownership(flow.uuid).owner is None

    def test_a_stale_commit_writes_nothing(self, conn: Connection) -> None:
        flow = _taken_flow(conn)
        assert conn.change_ownership(flow.uuid, OwnChange("take", 1, "h:2:2", 30.0, force=True))
        before = conn.get_flow_details(flow.uuid).to_dict()
        added = _added(flow, "c")
        flow.state = "SUCCESS"
        first = flow.tasks[0]
        first.state = "SUCCESS"
        attempts = [
            ((flow, first), {"new": [added], "release": _release(1)}),
            ((flow,), {"new": [added]}),
            ((first,), {"release": _release(1)}),
            ((), {"release": _release(1)}),
        ]
        for details, options in attempts:
            with pytest.raises(FencedOut):
                conn.commit_details(*details, fence=(flow.uuid, 1), **options)  # type: ignore[arg-type]
        assert conn.get_flow_details(flow.uuid).to_dict() == before  # no task "c" either
        seen = conn.get_ownership(flow.uuid)
        assert (seen.owner, seen.fence) == ("h:2:2", 2)

    def test_a_fenced_commit_with_one_stale_row_writes_nothing(self, conn: Connection) -> None:
        flow = _taken_flow(conn)
        first, second = flow.tasks
        stale = conn.get_task_details(second.uuid)
        conn.update_details(second, fence=(flow.uuid, 1))  # someone wrote it meanwhile
        before = conn.get_flow_details(flow.uuid).to_dict()
        first.state = flow.state = "RUNNING"
        stale.state = "FAILURE"
        with pytest.raises(ConflictError):
            conn.update_details(first, stale, fence=(flow.uuid, 1))
        with pytest.raises(ConflictError):
            conn.commit_details(flow, first, stale, fence=(flow.uuid, 1), new=[_added(flow, "c")])
        with pytest.raises(ConflictError):
            conn.commit_details(first, stale, fence=(flow.uuid, 1), release=_release(1))
        assert conn.get_flow_details(flow.uuid).to_dict() == before  # not "a", nor "c"
        assert (first.revision, flow.revision) == (1, 1)
        assert conn.get_ownership(flow.uuid).owner == "h:1:1"

    def test_a_fenced_commit_of_a_destroyed_task_writes_nothing(self, conn: Connection) -> None:
        flow = _taken_flow(conn)
        first, second = flow.tasks
        conn.destroy_task_details(flow.uuid, [second.uuid])
        first.state = second.state = "SUCCESS"
        with pytest.raises(NotFound):
            conn.update_details(first, second, fence=(flow.uuid, 1))
        assert conn.get_task_details(first.uuid).state == "PENDING"

    def test_commit_details_refuses_what_it_cannot_vouch_for(self, conn: Connection) -> None:
        flow = _taken_flow(conn)
        added = _added(flow, "c")
        with pytest.raises(ValueError, match="flow detail"):
            conn.commit_details(flow.tasks[0], fence=(flow.uuid, 1), new=[added])
        with pytest.raises(ValueError, match="release"):
            conn.commit_details(flow, fence=(flow.uuid, 1), release=_release(2))
        with pytest.raises(ValueError, match="release"):
            conn.commit_details(flow, fence=(flow.uuid, 1), release=OwnChange("renew", 1))
        assert [td.name for td in conn.get_flow_details(flow.uuid)] == ["a", "b"]
        assert conn.get_ownership(flow.uuid).owner == "h:1:1"
