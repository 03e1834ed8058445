"""How many statements, commits and transactions one one-task job costs on PostgreSQL.

From ``post`` to DONE through a real conductor, every statement on the store's engine
(SQLAlchemy events) and on the board's own autocommit connections (a counting psycopg
cursor) is counted and pinned exactly: a change that adds a read or a commit to a job
fails here and is made on purpose (raise the numbers with a reason), not by accident.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa

import ledgerflow as lf
from ledgerflow import states
from ledgerflow.jobs import DONE, JobBoard
from ledgerflow.jobs.postgres import PostgresBoard

FACTORY = "tests.jobs.job_flows:one_task"


@dataclass
class Traffic:
    """What went to the server while counting: statements, commits, transactions."""

    #: (where, first word) of each statement: "store" (SQLAlchemy) or "board" (autocommit).
    statements: list[tuple[str, str]] = field(default_factory=list)
    commits: int = 0
    rollbacks: int = 0
    counting: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, where: str, text: str) -> None:
        """Record one statement (while counting)."""
        with self.lock:
            if self.counting:
                self.statements.append((where, text.split()[0].upper()))

    def count(self, what: str) -> None:
        """Record one commit or rollback of the store's engine (while counting)."""
        with self.lock:
            if self.counting:
                setattr(self, what, getattr(self, what) + 1)

    @property
    def autocommitted(self) -> int:
        """Statements the board ran alone in autocommit: one transaction (and commit) each."""
        return sum(1 for where, _ in self.statements if where == "board")

    @property
    def transactions(self) -> int:
        """Every transaction the server ran: committed, rolled back (reads), autocommitted."""
        return self.commits + self.rollbacks + self.autocommitted

    def verbs(self, where: str | None = None) -> list[str]:
        """The statements' first words (only those sent from ``where``, if given)."""
        return [verb for place, verb in self.statements if where in (None, place)]


@pytest.fixture
def board(pg_board: JobBoard) -> PostgresBoard:
    """An empty PostgreSQL board (jobs and logbooks in one database)."""
    assert isinstance(pg_board, PostgresBoard)
    return pg_board


@pytest.fixture
def traffic(board: PostgresBoard, monkeypatch: pytest.MonkeyPatch) -> Iterator[Traffic]:
    """Listens to the store's engine and to the board's autocommit connections."""
    import psycopg

    seen = Traffic()

    class CountingCursor(psycopg.Cursor[Any]):
        def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            seen.note("board", str(query))
            return super().execute(query, params, **kwargs)

    connection = board._connection

    def counted() -> Any:
        conn = connection()
        conn.cursor_factory = CountingCursor
        return conn

    monkeypatch.setattr(board, "_connection", counted)
    events: dict[str, Any] = {
        "before_cursor_execute": lambda *args: seen.note("store", str(args[2])),
        "commit": lambda *args: seen.count("commits"),
        "rollback": lambda *args: seen.count("rollbacks"),
    }
    for name, listener in events.items():
        sa.event.listen(board.store.engine, name, listener)
    try:
        yield seen
    finally:
        for name, listener in events.items():
            sa.event.remove(board.store.engine, name, listener)


def _one_job(board: PostgresBoard, conductor: lf.Conductor, seen: Traffic | None) -> str:
    """Post one job and run it to DONE; count from the post to the job's DONE."""
    if seen is not None:
        seen.counting = True
    job = board.post(FACTORY, store={"n": 2})
    posted = len(seen.statements) if seen is not None else 0
    conductor.run(until_idle=True)  # on_finish stops the count at the job's end
    assert board.get(job.uuid).state == DONE
    if seen is not None:
        seen.statements.insert(posted, ("post", "|"))
    return job.flow_uuid


def test_a_one_task_job_takes_a_pinned_number_of_round_trips(
    board: PostgresBoard, traffic: Traffic
) -> None:
    def stop_counting(job: lf.Job, state: str) -> None:
        traffic.counting = False

    conductor = lf.Conductor(board, workers=1, on_finish=stop_counting)
    # The first job of a conductor checks the schema and imports the factory; not counted.
    _one_job(board, conductor, None)
    flow_uuid = _one_job(board, conductor, traffic)

    post_end = traffic.statements.index(("post", "|"))
    post, run = traffic.verbs()[:post_end], traffic.verbs()[post_end + 1 :]
    # The post, one autocommitted statement: the book, its flow detail and the job
    # inserted (fresh uuids: nothing to look up) in its WITH, its SELECT the pg_notify.
    assert traffic.statements[:post_end] == [("board", "WITH")], post
    assert run == [
        "UPDATE",  # the claim (autocommit)
        "SELECT",  # one snapshot (BEGIN ISOLATION LEVEL REPEATABLE READ, no SET): the
        "SELECT",  # flow (its row tells the ownership), its tasks, its book; it names the
        "SELECT",  # factory too, and a conductor that built that factory resumes from it
        "UPDATE",  # the take (UPDATE ... RETURNING), autocommitted
        "WITH",  # RUNNING: the flow, with the task added since the post inserted
        "WITH",  # SUCCESS: the task, then the flow, whose UPDATE lets go of it
        "UPDATE",  # the complete (autocommit), from the engine's committed copy of the end
    ], run
    # the post, the claim and the complete
    assert traffic.verbs("board") == ["WITH", "UPDATE", "UPDATE"]
    # SQLAlchemy's count: the snapshot's COMMIT, and its bookkeeping of the take, RUNNING
    # and SUCCESS, each one autocommitted statement (no BEGIN nor COMMIT sent for them)
    assert traffic.commits == 4
    assert traffic.rollbacks == 0
    # the snapshot, take, RUNNING, SUCCESS; the post, claim and complete
    assert traffic.transactions == 7
    assert len(traffic.statements) - 1 == 9
    with board.backend.connect() as conn:
        flow = conn.get_flow_details(flow_uuid)
    assert flow.state == states.SUCCESS and flow.owner is None  # ended and let go
    assert [(td.state, td.attempts, td.result) for td in flow] == [(states.SUCCESS, 1, 4)]


def test_a_conductor_finding_no_work_takes_a_pinned_number_of_round_trips(
    board: PostgresBoard, traffic: Traffic
) -> None:
    conductor = lf.Conductor(board, workers=1)
    _one_job(board, conductor, None)
    traffic.counting = True
    conductor.run(until_idle=True)
    traffic.counting = False
    # The empty claim; one look for work (READY, claims, lapsed ones at max_attempts: none
    # to end, so fail_lapsed is not asked); until_idle's own look.  Autocommitted each.
    assert traffic.statements == [("board", "UPDATE"), ("board", "SELECT"), ("board", "SELECT")]
    assert traffic.transactions == 3
