"""The ownership and fencing contract (API.md, "One owner per running flow").

``BackendConformance`` inherits these checks; each takes the ``conn`` and ``backend``
fixtures.  A backend that passes them can host engines that never run a flow twice.
"""

from __future__ import annotations

import threading
import time

import pytest

from ledgerflow.errors import FencedOut, NotFound
from ledgerflow.models import FlowDetail, LogBook, TaskDetail
from ledgerflow.persistence.base import Backend, Connection
from ledgerflow.persistence.ownership import OwnChange

__all__ = ["FencingChecks"]


def _stored_flow(conn: Connection) -> FlowDetail:
    book, flow = LogBook("owned"), FlowDetail("owned")
    flow.add(TaskDetail("a"))
    flow.add(TaskDetail("b"))
    book.add(flow)
    conn.save_logbook(book)
    return flow


def _take(conn: Connection, flow_uuid: str, owner: str, lease: float = 30.0) -> bool:
    fence = conn.get_ownership(flow_uuid).fence
    return conn.change_ownership(flow_uuid, OwnChange("take", fence, owner, lease))


class FencingChecks:
    """Taking, renewing, letting go and fenced writes."""

    def test_a_new_flow_is_unowned_at_fence_zero(self, conn: Connection) -> None:
        flow = _stored_flow(conn)
        seen = conn.get_ownership(flow.uuid)
        assert (seen.owner, seen.fence, seen.lease_expires_at, seen.request) == (
            None,
            0,
            None,
            None,
        )
        stored = conn.get_flow_details(flow.uuid)
        assert (stored.owner, stored.fence, stored.lease_expires_at) == (None, 0, None)
        with pytest.raises(NotFound):
            conn.get_ownership("no-such-flow")
        with pytest.raises(NotFound):
            conn.change_ownership("no-such-flow", OwnChange("take", 0, "x:1:1", 1.0))

    def test_take_bumps_the_fence_and_sets_a_lease_in_the_future(self, conn: Connection) -> None:
        flow = _stored_flow(conn)
        assert _take(conn, flow.uuid, "h:1:1")
        seen = conn.get_ownership(flow.uuid)
        assert (seen.owner, seen.fence) == ("h:1:1", 1)
        assert seen.lease_expires_at is not None and seen.lease_expires_at > seen.now
        stored = conn.get_flow_details(flow.uuid)
        assert (stored.owner, stored.fence) == ("h:1:1", 1)
        assert stored.revision == flow.revision  # ownership is not a record change

    def test_a_live_lease_refuses_a_second_taker(self, conn: Connection) -> None:
        flow = _stored_flow(conn)
        assert _take(conn, flow.uuid, "h:1:1")
        assert not _take(conn, flow.uuid, "h:2:2")
        assert conn.get_ownership(flow.uuid).owner == "h:1:1"
        forced = OwnChange("take", 1, "h:2:2", 30.0, force=True)  # owner known dead
        assert conn.change_ownership(flow.uuid, forced)
        assert conn.get_ownership(flow.uuid).fence == 2

    def test_an_expired_lease_can_be_taken(self, conn: Connection) -> None:
        flow = _stored_flow(conn)
        assert _take(conn, flow.uuid, "h:1:1", lease=0.05)
        deadline = time.monotonic() + 10
        while not conn.get_ownership(flow.uuid).expired:  # the store's clock decides
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert _take(conn, flow.uuid, "h:2:2")
        assert conn.get_ownership(flow.uuid).owner == "h:2:2"

    def test_two_takers_racing_exactly_one_wins(self, backend: Backend) -> None:
        with backend.connect() as conn:
            flow = _stored_flow(conn)
        for round_ in range(5):
            wins: list[str] = []
            barrier = threading.Barrier(2)

            def taker(
                name: str, barrier: threading.Barrier = barrier, wins: list[str] = wins
            ) -> None:
                with backend.connect() as mine:
                    fence = mine.get_ownership(flow.uuid).fence
                    barrier.wait()
                    change = OwnChange("take", fence, name, 30.0, force=True)
                    if mine.change_ownership(flow.uuid, change):
                        wins.append(name)

            threads = [threading.Thread(target=taker, args=(f"h:{i}:{round_}",)) for i in (1, 2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert len(wins) == 1

    def test_renew_and_release_need_the_current_fence(self, conn: Connection) -> None:
        flow = _stored_flow(conn)
        assert _take(conn, flow.uuid, "h:1:1")
        assert conn.change_ownership(flow.uuid, OwnChange("renew", 1, "h:1:1", 30.0))
        assert not conn.change_ownership(flow.uuid, OwnChange("renew", 1, "h:9:9", 30.0))
        assert not conn.change_ownership(flow.uuid, OwnChange("renew", 0, "h:1:1", 30.0))
        assert not conn.change_ownership(flow.uuid, OwnChange("release", 0))
        assert conn.change_ownership(flow.uuid, OwnChange("release", 1))
        seen = conn.get_ownership(flow.uuid)
        assert (seen.owner, seen.fence, seen.lease_expires_at) == (None, 1, None)

    def test_requests_suspend_only_while_owned_and_cancel_always(self, conn: Connection) -> None:
        flow = _stored_flow(conn)
        assert not conn.change_ownership(flow.uuid, OwnChange("request", request="suspend"))
        assert conn.get_ownership(flow.uuid).request is None
        assert _take(conn, flow.uuid, "h:1:1")
        assert conn.change_ownership(flow.uuid, OwnChange("request", request="suspend"))
        assert conn.get_ownership(flow.uuid).request == "suspend"
        assert conn.change_ownership(flow.uuid, OwnChange("request", request="cancel"))
        assert conn.change_ownership(flow.uuid, OwnChange("release", 1))
        assert conn.get_ownership(flow.uuid).request == "cancel"  # kept until CANCELLED
        assert _take(conn, flow.uuid, "h:2:2")
        assert conn.get_ownership(flow.uuid).request == "cancel"
        assert conn.change_ownership(flow.uuid, OwnChange("release", 2, clear_cancel=True))
        assert conn.get_ownership(flow.uuid).request is None

    def test_a_write_under_a_lost_fence_is_refused_and_writes_nothing(
        self, conn: Connection
    ) -> None:
        flow = _stored_flow(conn)
        assert _take(conn, flow.uuid, "h:1:1")
        first, second = flow.tasks
        first.state = second.state = "RUNNING"
        conn.update_details(first, second, fence=(flow.uuid, 1))  # the fence holds: it lands
        assert conn.change_ownership(flow.uuid, OwnChange("take", 1, "h:2:2", 30.0, force=True))
        before = conn.get_flow_details(flow.uuid).to_dict()
        first.state = second.state = "SUCCESS"
        for details in ((first,), (first, second), (flow, first), (flow,)):
            with pytest.raises(FencedOut):
                conn.update_details(*details, fence=(flow.uuid, 1))
        with pytest.raises(FencedOut):
            conn.update_flow_details(flow, fence=(flow.uuid, 1))
        assert conn.get_flow_details(flow.uuid).to_dict() == before
        conn.update_details(first, fence=(flow.uuid, 2))  # the new owner's fence lands
        assert conn.get_task_details(first.uuid).state == "SUCCESS"

    def test_record_writes_keep_the_stored_ownership(self, conn: Connection) -> None:
        flow = _stored_flow(conn)
        book = conn.get_logbook(conn.locate(flow.uuid).book_uuid or "")
        assert _take(conn, flow.uuid, "h:1:1")
        stale = book.flows[0]  # read before the take: owner None, fence 0
        stale.meta = {"changed": True}
        conn.save_logbook(book)
        conn.update_flow_details(stale)
        seen = conn.get_ownership(flow.uuid)
        assert (seen.owner, seen.fence) == ("h:1:1", 1)
        assert conn.get_flow_details(flow.uuid).meta == {"changed": True}
