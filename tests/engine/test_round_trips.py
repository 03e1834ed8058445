"""How many statements and transactions a resume of a one-task flow costs on PostgreSQL.

Pinned exactly, so a change that adds a read or a commit to the hot path fails here and
is made on purpose (raise the numbers with a reason) rather than by accident.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa

import ledgerflow as lf
from ledgerflow import states
from ledgerflow.persistence.sql.backend import SQLBackend

FACTORY = "tests.jobs.job_flows:one_task"


@dataclass
class Traffic:
    """What went to the server: statements, commits and rollbacks."""

    statements: list[str] = field(default_factory=list)
    commits: int = 0
    rollbacks: int = 0


@pytest.fixture
def store(pg_store: SQLBackend) -> SQLBackend:
    """An upgraded, emptied PostgreSQL store."""
    return pg_store


def _traffic(backend: SQLBackend, uuid: str) -> Traffic:
    seen = Traffic()

    def statement(*args: object) -> None:
        seen.statements.append(str(args[2]).split()[0].upper())

    def commit(*args: object) -> None:
        seen.commits += 1

    def rollback(*args: object) -> None:
        seen.rollbacks += 1

    events = {"before_cursor_execute": statement, "commit": commit, "rollback": rollback}
    for name, listener in events.items():
        sa.event.listen(backend.engine, name, listener)
    try:
        assert lf.resume(backend, uuid) == {"doubled": 4}
    finally:
        for name, listener in events.items():
            sa.event.remove(backend.engine, name, listener)
    return seen


def test_resuming_a_one_task_flow_takes_a_pinned_number_of_round_trips(
    store: SQLBackend,
) -> None:
    # The schema is checked once per backend: the first resume may look, the second not.
    lf.resume(store, lf.load(FACTORY, backend=store, store={"n": 2}).flow_detail.uuid)
    uuid = lf.load(FACTORY, backend=store, store={"n": 2}).flow_detail.uuid

    seen = _traffic(store, uuid)

    # The schema check (2 SELECTs); the factory read (one row, no snapshot: decoding the
    # records waits for the import); one snapshot of the flow, its tasks, where it lives
    # (2) and its book (5 SELECTs in a BEGIN ISOLATION LEVEL REPEATABLE READ: no SET;
    # an unowned flow's row tells its ownership); then three autocommitted statements,
    # no BEGIN nor COMMIT each (see persistence/sql/onestatement.py): the take as one
    # UPDATE ... RETURNING, RUNNING (flow + new task) as one WITH, SUCCESS (task + flow,
    # the flow's UPDATE letting go of it) as one WITH.
    assert seen.statements == ["SELECT"] * 8 + ["UPDATE", "WITH", "WITH"], seen.statements
    # SQLAlchemy's count: the snapshot's COMMIT, plus one for each autocommitted statement
    # (its bookkeeping: nothing is sent for those).
    assert seen.commits == 1 + 3
    assert seen.rollbacks == 2  # the end of the schema check's and the factory read's
    with store.connect() as conn:
        flow = conn.get_flow_details(uuid)
    assert flow.state == states.SUCCESS
    assert flow.owner is None  # let go
    assert [(td.state, td.attempts) for td in flow] == [(states.SUCCESS, 1)]
