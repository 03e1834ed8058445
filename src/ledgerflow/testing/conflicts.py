"""More of the backend contract: unknown records, stale writes, deletes.

``BackendConformance`` inherits these checks; each takes the ``conn`` fixture (a
connection to an empty, upgraded store).  A write that cannot land (a record not
found, a stale revision, a name too long) raises and writes nothing.
"""

from __future__ import annotations

import pytest

from ledgerflow.errors import ConflictError, NotFound
from ledgerflow.models import FlowDetail, TaskDetail
from ledgerflow.persistence.base import Connection
from ledgerflow.testing.books import make_book

__all__ = ["ConflictChecks"]


class ConflictChecks:
    """Not found, conflicts and deletes."""

    # ---- not found --------------------------------------------------------------
    def test_unknown_uuids_raise_not_found(self, conn: Connection) -> None:
        for call in (
            conn.get_logbook,
            conn.get_flow_details,
            conn.get_task_details,
            conn.destroy_logbook,
            conn.get_flows_for_book,
            conn.get_tasks_for_flow,
            conn.locate,
        ):
            with pytest.raises(NotFound) as info:
                call("no-such-uuid")
            assert isinstance(info.value, LookupError)
            assert "no-such-uuid" in str(info.value)

    def test_updates_of_unsaved_details_raise_not_found(self, conn: Connection) -> None:
        with pytest.raises(NotFound):
            conn.update_task_details(TaskDetail("never-saved"))
        with pytest.raises(NotFound):
            conn.update_flow_details(FlowDetail("never-saved"))
        with pytest.raises(NotFound):
            conn.update_details(TaskDetail("never-saved"))

    def test_updates_of_destroyed_details_raise_not_found_and_write_nothing(
        self, conn: Connection
    ) -> None:
        gone = conn.save_logbook(make_book(tasks=1))
        kept = conn.save_logbook(make_book(tasks=1))
        conn.destroy_logbook(gone.uuid)
        survivor, lost = kept.flows[0].tasks[0], gone.flows[0].tasks[0]
        before = conn.get_task_details(survivor.uuid).to_dict()
        survivor.result = "must not land"
        with pytest.raises(NotFound, match=lost.uuid):
            conn.update_details(survivor, lost)
        with pytest.raises(NotFound, match=gone.flows[0].uuid):
            conn.update_details(gone.flows[0])
        assert conn.get_task_details(survivor.uuid).to_dict() == before
        assert survivor.revision == 1

    def test_names_longer_than_stores_keep_are_refused_before_writing(
        self, conn: Connection
    ) -> None:
        book = conn.save_logbook(make_book(tasks=1))
        flow, task = book.flows[0], book.flows[0].tasks[0]
        before = conn.get_logbook(book.uuid).to_dict()
        for detail, field in ((task, "name"), (task, "version"), (flow, "type"), (book, "name")):
            kept = getattr(detail, field)
            setattr(detail, field, "n" * 256)
            with pytest.raises(ValueError, match=f"{field} of .* 256 characters"):
                conn.save_logbook(book)
            setattr(detail, field, kept)
        task.name = None  # type: ignore[assignment]
        with pytest.raises(ValueError, match=r"name of task detail .* not NoneType"):
            conn.update_details(task)
        assert conn.get_logbook(book.uuid).to_dict() == before
        task.name = "x" * 255  # the longest name every store keeps
        conn.update_details(task)
        assert conn.get_task_details(task.uuid).name == "x" * 255

    # ---- conflicts --------------------------------------------------------------
    def test_stale_task_write_raises_conflict_and_keeps_the_newer(self, conn: Connection) -> None:
        book = conn.save_logbook(make_book(tasks=1))
        mine = conn.get_task_details(book.flows[0].tasks[0].uuid)
        theirs = conn.get_task_details(mine.uuid)
        theirs.result = "theirs"
        conn.update_task_details(theirs)
        mine.result = "mine"
        with pytest.raises(ConflictError):
            conn.update_task_details(mine)
        assert conn.get_task_details(mine.uuid).result == "theirs"
        assert mine.revision == 1

    def test_stale_flow_and_book_writes_raise_conflict(self, conn: Connection) -> None:
        book = conn.save_logbook(make_book(tasks=1))
        stale_flow = conn.get_flow_details(book.flows[0].uuid)
        stale_book = conn.get_logbook(book.uuid)
        conn.update_flow_details(book.flows[0])
        conn.save_logbook(book)
        with pytest.raises(ConflictError):
            conn.update_flow_details(stale_flow)
        stale_book.meta = {"lost": True}
        with pytest.raises(ConflictError):
            conn.save_logbook(stale_book)
        assert conn.get_logbook(book.uuid).meta == book.meta

    def test_failed_save_writes_nothing(self, conn: Connection) -> None:
        book = conn.save_logbook(make_book(tasks=2))
        stale = conn.get_task_details(book.flows[0].tasks[0].uuid)
        conn.update_task_details(book.flows[0].tasks[0])
        before = conn.get_logbook(book.uuid).to_dict()
        copy = conn.get_logbook(book.uuid)
        copy.flows[0].add(stale)  # replaces the fresh copy with the stale one
        copy.meta = {"changed": 1}
        copy.add(FlowDetail("never-stored"))
        with pytest.raises(ConflictError):
            conn.save_logbook(copy)
        assert conn.get_logbook(book.uuid).to_dict() == before

    def test_failed_update_details_writes_nothing(self, conn: Connection) -> None:
        book = conn.save_logbook(make_book(tasks=2))
        first, second = book.flows[0].tasks
        stale = conn.get_task_details(second.uuid)
        conn.update_task_details(second)
        first.result = "should not land"
        stale.result = "stale"
        with pytest.raises(ConflictError):
            conn.update_details(first, stale)
        assert conn.get_task_details(first.uuid).result != "should not land"
        assert first.revision == 1

    def test_a_detail_cannot_move_to_another_parent(self, conn: Connection) -> None:
        book = conn.save_logbook(make_book(flows=2, tasks=1))
        moved = book.flows[0].tasks[0]
        book.flows[1].add(moved)
        with pytest.raises(ConflictError):
            conn.save_logbook(book)

    def test_fresh_objects_overwrite_unconditionally(self, conn: Connection) -> None:
        book = conn.save_logbook(make_book(tasks=1))
        conn.save_logbook(book)
        fresh = TaskDetail("replacement", uuid=book.flows[0].tasks[0].uuid)
        conn.update_task_details(fresh)
        assert fresh.revision == 3
        assert conn.get_task_details(fresh.uuid).name == "replacement"

    # ---- deleting ---------------------------------------------------------------
    def test_destroy_removes_book_flows_and_tasks(self, conn: Connection) -> None:
        keep = conn.save_logbook(make_book("keep"))
        gone = conn.save_logbook(make_book("gone", flows=2))
        conn.destroy_logbook(gone.uuid)
        for call, uuid in (
            (conn.get_logbook, gone.uuid),
            (conn.get_flow_details, gone.flows[1].uuid),
            (conn.get_task_details, gone.flows[1].tasks[2].uuid),
        ):
            with pytest.raises(NotFound):
                call(uuid)
        assert [b.uuid for b in conn.get_logbooks()] == [keep.uuid]
        assert conn.get_logbook(keep.uuid).to_dict() == keep.to_dict()
        assert conn.task_state_counts([gone.uuid]) == {gone.uuid: {}}

    def test_destroy_task_details_removes_only_those_tasks(self, conn: Connection) -> None:
        book = conn.save_logbook(make_book(flows=2, tasks=3))
        flow, other = book.flows
        first, gone, last = flow.tasks
        conn.destroy_task_details(flow.uuid, [gone.uuid])
        assert [t.uuid for t in conn.get_flow_details(flow.uuid)] == [first.uuid, last.uuid]
        with pytest.raises(NotFound):
            conn.get_task_details(gone.uuid)
        with pytest.raises(NotFound):  # all or nothing: one unknown uuid removes none
            conn.destroy_task_details(flow.uuid, [first.uuid, gone.uuid])
        with pytest.raises(NotFound):  # a task of another flow is not this flow's to delete
            conn.destroy_task_details(flow.uuid, [other.tasks[0].uuid])
        assert len(conn.get_flow_details(flow.uuid)) == 2
        assert len(conn.get_flow_details(other.uuid)) == 3
        added = TaskDetail("added")
        flow_now = conn.get_flow_details(flow.uuid)
        flow_now.add(added)
        conn.update_flow_details(flow_now)
        assert [t.name for t in conn.get_flow_details(flow.uuid)][-1] == "added"

    def test_clear_all(self, conn: Connection) -> None:
        book = conn.save_logbook(make_book())
        conn.clear_all()
        assert conn.get_logbooks() == []
        with pytest.raises(NotFound):
            conn.get_task_details(book.flows[0].tasks[0].uuid)
        conn.save_logbook(book)  # stored revisions are gone: a later save inserts again
        assert len(conn.get_logbooks()) == 1
