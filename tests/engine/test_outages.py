"""A store that blinks is ridden out: no task fails, nothing is reverted, nothing runs twice."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import ledgerflow as lf
from ledgerflow import states
from ledgerflow.persistence.base import Connection
from ledgerflow.persistence.sql.backend import SQLBackend

RETRY_LOG = "store unreachable, retrying"


def _kill_other_connections(uri: str) -> int:
    """Drop every other server connection to this test's database; how many were dropped."""
    backend = lf.open_backend(uri)
    assert isinstance(backend, SQLBackend)
    engine = backend.engine
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                rows = conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                ).all()
                return len(rows)
            ids = conn.execute(
                sa.text(
                    "SELECT id FROM information_schema.processlist "
                    "WHERE db = DATABASE() AND id <> CONNECTION_ID()"
                )
            ).scalars()
            killed = 0
            for ident in list(ids):
                conn.execute(sa.text(f"KILL {int(ident)}"))
                killed += 1
            return killed
    finally:
        backend.close()


def _blinking_flow(uri: str, executions: list[str]) -> lf.Flow:
    @lf.task(provides="a")
    def before() -> int:
        executions.append("before")
        return 1

    @lf.task(provides="b")
    def drops_mid_task(a: int) -> int:
        executions.append("drops_mid_task")
        assert _kill_other_connections(uri) >= 1
        return a + 1

    @lf.task(provides="c")
    def drops_mid_checkpoint(b: int) -> int:
        executions.append("drops_mid_checkpoint")
        ctx = lf.current_task()
        ctx.checkpoint("first half")
        assert _kill_other_connections(uri) >= 1
        ctx.checkpoint("second half")  # meets the dropped connection, reconnects, lands
        return b + 1

    reverted: list[str] = []
    for task in (before, drops_mid_task, drops_mid_checkpoint):
        task.revert(lambda *, result, flow_failures, _n=task.name, **_: reverted.append(_n))
    return lf.LinearFlow("blinks", before, drops_mid_task, drops_mid_checkpoint)


@pytest.mark.parametrize("server", ["postgres_uri", "mysql_uri"])
def test_dropped_server_connections_mid_task_and_mid_checkpoint_are_ridden_out(
    server: str, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    uri: str = request.getfixturevalue(server)
    executions: list[str] = []
    with caplog.at_level(logging.WARNING, "ledgerflow.engine"):
        engine = lf.load(_blinking_flow(uri, executions), backend=uri, lease=30)
        assert engine.run() == {"a": 1, "b": 2, "c": 3}
    assert executions == ["before", "drops_mid_task", "drops_mid_checkpoint"]
    assert RETRY_LOG in caplog.text
    with lf.open_backend(uri) as backend, backend.connect() as conn:
        flow = conn.get_flow_details(engine.flow_detail.uuid)
    assert flow.state == states.SUCCESS
    assert [(t.state, t.attempts) for t in flow] == [("SUCCESS", 1)] * 3
    assert flow.find_by_name("drops_mid_checkpoint").checkpoint == "second half"  # type: ignore[union-attr]


class _Heard(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.retrying = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if RETRY_LOG in record.getMessage():
            self.retrying.set()


def test_sqlite_busy_beyond_its_timeout_is_ridden_out(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    uri = f"sqlite:///{path}?busy_timeout=50"
    heard = _Heard()
    logging.getLogger("ledgerflow.engine").addHandler(heard)
    blocker: list[sqlite3.Connection] = []

    @lf.task(provides="a")
    def locks_the_store() -> int:
        locked = threading.Event()

        def hold_the_lock() -> None:
            other = sqlite3.connect(path, isolation_level=None)
            other.execute("BEGIN IMMEDIATE")  # another writer holds the lock past 50 ms
            blocker.append(other)
            locked.set()
            heard.retrying.wait(30)  # until the engine was told "locked" and retries
            other.execute("ROLLBACK")
            other.close()

        threading.Thread(target=hold_the_lock).start()
        locked.wait(30)
        return 1

    @lf.task(provides="b")
    def after(a: int) -> int:
        return a + 1

    try:
        assert lf.run(lf.LinearFlow("busy", locks_the_store, after), backend=uri) == {
            "a": 1,
            "b": 2,
        }
    finally:
        logging.getLogger("ledgerflow.engine").removeHandler(heard)
    assert heard.retrying.is_set() and blocker


def test_a_retried_commit_that_had_landed_is_not_applied_twice(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'twice.db'}"
    backend = lf.open_backend(uri)
    failed_once: list[bool] = []

    def connect() -> Connection:
        conn = type(backend).connect(backend)
        original = conn.update_details

        def lands_then_fails(*details: Any, **options: Any) -> None:
            original(*details, **options)
            if not failed_once:  # the commit landed, but the client never heard back
                failed_once.append(True)
                for detail in details:
                    detail.revision -= 1
                raise lf.StorageError("connection lost while committing")

        conn.update_details = lands_then_fails  # type: ignore[method-assign]
        return conn

    backend.connect = connect  # type: ignore[method-assign]
    ran: list[str] = []

    @lf.task(provides="a")
    def once() -> int:
        ran.append("once")
        return 1

    assert lf.run(lf.LinearFlow("twice", once), backend=backend) == {"a": 1}
    assert failed_once and ran == ["once"]
    backend.close()


def test_listeners_hear_of_a_change_only_once_it_committed(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'heard.db'}"
    seen: list[tuple[str, str, str]] = []
    engine: lf.Engine

    @lf.task(provides="a")
    def work() -> int:
        return 1

    def listener(event: lf.StateChange) -> None:
        with lf.open_backend(uri) as other, other.connect() as conn:
            flow = conn.get_flow_details(engine.flow_detail.uuid)
        stored = flow.state if event.kind == "flow" else flow.find_by_name(event.name).state  # type: ignore[union-attr]
        seen.append((event.name, event.state, stored))

    engine = lf.load(lf.LinearFlow("heard", work), backend=uri)
    engine.on_change(listener)
    engine.run()
    assert seen and all(state == stored for _, state, stored in seen), seen


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("LEDGERFLOW_TEST_PG_RESTART") != "1",
    reason="restarts the shared PostgreSQL server: set LEDGERFLOW_TEST_PG_RESTART=1 (.ci/run does)",
)
def test_a_postgresql_restart_mid_task_is_ridden_out(postgres_uri: str) -> None:
    executions: list[str] = []

    @lf.task(provides="a")
    def restarts_the_server() -> int:
        executions.append("restart")
        version = next(iter(os.listdir("/etc/postgresql")))
        subprocess.run(
            [
                "pg_ctlcluster",
                "--skip-systemctl-redirect",
                version,
                "main",
                "restart",
                "-m",
                "immediate",
            ],
            check=True,
            timeout=120,
        )
        return 1

    @lf.task(provides="b")
    def after(a: int) -> int:
        executions.append("after")
        lf.current_task().checkpoint("after the restart")
        return a + 1

    flow = lf.LinearFlow("restart", restarts_the_server, after)
    assert lf.run(flow, backend=postgres_uri) == {"a": 1, "b": 2}
    assert executions == ["restart", "after"]
