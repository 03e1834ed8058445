"""PostgreSQL's one-statement commit against a take still in flight (sql/onestatement.py).

A taker's UPDATE of the flow row holds its lock until it commits.  The engine's commit,
one autocommitted statement, waits on that lock (the flow's own UPDATE, or the FOR SHARE
gate when only task rows are written), then sees the committed fence: fenced out, it
writes nothing.  If the taker rolls back instead, the commit lands.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest

import ledgerflow as lf
from ledgerflow.errors import FencedOut
from ledgerflow.models import FlowDetail, LogBook, TaskDetail
from ledgerflow.persistence.ownership import OwnChange


@pytest.fixture
def backend(pg_store: lf.Backend) -> lf.Backend:
    """An upgraded, emptied PostgreSQL store."""
    return pg_store


def _taken_flow(conn: lf.Connection) -> FlowDetail:
    book, flow = LogBook("raced"), FlowDetail("raced")
    flow.add(TaskDetail("a"))
    flow.add(TaskDetail("b"))
    book.add(flow)
    conn.save_logbook(book)
    assert conn.change_ownership(flow.uuid, OwnChange("take", 0, "h:1:1", 30.0))
    return flow


def _waiting_on_a_lock(admin: psycopg.Connection[Any], database: str) -> bool:
    row = admin.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
        (database,),
    ).fetchone()
    return bool(row and row[0])


def _commit_during_a_take(
    postgres_uri: str, conn: lf.Connection, write: Any, *, taker_commits: bool
) -> list[BaseException]:
    """Run ``write()`` while a take of the flow is uncommitted; end the take; its errors."""
    database = postgres_uri.rsplit("/", 1)[1]
    errors: list[BaseException] = []
    with (
        psycopg.connect(postgres_uri) as taker,
        psycopg.connect(postgres_uri, autocommit=True) as admin,
    ):
        taker.execute(
            "UPDATE ledgerflow_flow_details SET fence = fence + 1, owner = 'h:2:2'"
            " WHERE owner = 'h:1:1'"
        )

        def run() -> None:
            try:
                write()
            except BaseException as exc:  # what the test asserts on
                errors.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 60
        while not _waiting_on_a_lock(admin, database):  # the commit waits on the take
            assert thread.is_alive(), errors
            assert time.monotonic() < deadline, "the commit never waited on the take's lock"
            time.sleep(0.01)
        (taker.commit if taker_commits else taker.rollback)()
        thread.join(60)
    assert not thread.is_alive()
    return errors


@pytest.mark.parametrize("with_flow", [False, True], ids=["tasks-only", "with-flow"])
def test_a_commit_waiting_on_a_take_that_commits_is_fenced_out(
    backend: lf.Backend, postgres_uri: str, with_flow: bool
) -> None:
    with backend.connect() as conn:
        flow = _taken_flow(conn)
        before = conn.get_flow_details(flow.uuid).to_dict()
        task = flow.tasks[0]
        task.state = flow.state = "RUNNING"
        details = (flow, task) if with_flow else (task,)
        errors = _commit_during_a_take(
            postgres_uri,
            conn,
            lambda: conn.update_details(*details, fence=(flow.uuid, 1)),
            taker_commits=True,
        )
        assert len(errors) == 1 and isinstance(errors[0], FencedOut), errors
        after = conn.get_flow_details(flow.uuid).to_dict()
        assert {k: v for k, v in after.items() if k not in ("owner", "fence")} == {
            k: v for k, v in before.items() if k not in ("owner", "fence")
        }
        assert conn.get_ownership(flow.uuid).fence == 2


def test_a_commit_waiting_on_a_take_that_rolls_back_lands(
    backend: lf.Backend, postgres_uri: str
) -> None:
    with backend.connect() as conn:
        flow = _taken_flow(conn)
        task = flow.tasks[0]
        task.state = "RUNNING"
        errors = _commit_during_a_take(
            postgres_uri,
            conn,
            lambda: conn.update_details(task, fence=(flow.uuid, 1)),
            taker_commits=False,
        )
        assert errors == []
        assert conn.get_task_details(task.uuid).state == "RUNNING"
        assert task.revision == 2
