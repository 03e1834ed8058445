"""``ledgerflow check``, ``ledgerflow purge``, and corrupt records in ``books`` listings."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import ledgerflow as lf
from ledgerflow import states
from ledgerflow.models import utcnow
from ledgerflow.persistence.files import documents
from ledgerflow.persistence.sql.tables import BOOKS, FLOWS
from tests.cli.conftest import Runner, assert_one_line_error, sample_book


def _sqlite_file(uri: str) -> Path:
    return Path(uri.removeprefix("sqlite:///"))


def test_check_on_a_healthy_and_on_a_missing_store(
    cli: Runner, sqlite_uri: str, tmp_path: Path
) -> None:
    missing = f"sqlite:///{tmp_path / 'nothing.db'}"
    outcome = cli("--backend", missing, "check")
    assert outcome.exit_code == 0 and "nothing to check" in outcome.stdout
    assert not (tmp_path / "nothing.db").exists()
    with lf.open_backend(sqlite_uri) as backend, backend.connect() as conn:
        conn.upgrade()
        conn.save_logbook(sample_book())
    outcome = cli("--backend", sqlite_uri, "check")
    assert outcome.exit_code == 0 and "no problem found" in outcome.stdout


def test_check_lists_each_corrupt_record_and_exits_1(
    cli: Runner, sqlite_uri: str, store: lf.LogBook
) -> None:
    flow = store.flows[0]
    with sqlite3.connect(_sqlite_file(sqlite_uri)) as raw:
        raw.execute(f"UPDATE {FLOWS.name} SET state = 'BOGUS' WHERE uuid = ?", (flow.uuid,))
    outcome = cli("--backend", sqlite_uri, "check")
    assert_one_line_error(outcome, 1, "1 problem found")
    [line] = outcome.stdout.strip().splitlines()
    assert line.startswith(f"CORRUPT flow detail {flow.uuid} (table {FLOWS.name}, row id ")
    assert "'BOGUS'" in line
    outcome = cli("--backend", sqlite_uri, "check", "--json")
    assert outcome.exit_code == 1
    [entry] = json.loads(outcome.stdout)
    assert entry["uuid"] == flow.uuid and entry["kind"] == "flow"


def test_books_lists_the_others_beside_a_corrupt_book(
    cli: Runner, sqlite_uri: str, store: lf.LogBook
) -> None:
    with sqlite3.connect(_sqlite_file(sqlite_uri)) as raw:
        raw.execute(f"UPDATE {BOOKS.name} SET meta = '{{oops' WHERE uuid = ?", (store.uuid,))
    outcome = cli("--backend", sqlite_uri, "books")
    assert_one_line_error(outcome, 1, "1 corrupt record is listed", "ledgerflow check")
    lines = outcome.stdout.strip().splitlines()
    assert len(lines) == 2
    assert any("weekly-report" in line for line in lines)
    assert any(line.startswith("CORRUPT") and store.uuid in line for line in lines)
    outcome = cli("--backend", sqlite_uri, "books", "--json")
    assert outcome.exit_code == 1
    entries = json.loads(outcome.stdout)
    assert sorted("corrupt" in entry for entry in entries) == [False, True]


def test_books_on_a_file_store_with_a_truncated_task_file(cli: Runner, tmp_path: Path) -> None:
    root = tmp_path / "store"
    uri = f"file://{root}"
    with lf.open_backend(uri) as backend, backend.connect() as conn:
        conn.upgrade()
        bad = conn.save_logbook(sample_book("bad"))
        conn.save_logbook(sample_book("good-1"))
        conn.save_logbook(sample_book("good-2"))
    path = root / documents.record_path("task", bad.flows[0].tasks[0].uuid)
    path.write_bytes(path.read_bytes()[:10])
    outcome = cli("--backend", uri, "books")
    assert outcome.exit_code == 1
    lines = outcome.stdout.strip().splitlines()
    assert len(lines) == 3
    [broken] = [line for line in lines if "CORRUPT" in line]
    assert broken.startswith(bad.uuid) and str(path) in broken
    outcome = cli("--backend", uri, "check")
    assert outcome.exit_code == 1 and str(path) in outcome.stdout


def _aged(name: str, state: str, age: timedelta) -> lf.LogBook:
    book = sample_book(name, failed=False)
    book.flows[0].state = state
    book.flows[0].updated_at = utcnow() - age
    return book


def test_purge_dry_run_then_purge(cli: Runner, sqlite_uri: str) -> None:
    with lf.open_backend(sqlite_uri) as backend, backend.connect() as conn:
        conn.upgrade()
        conn.save_logbook(_aged("old", states.SUCCESS, timedelta(days=40)))
        conn.save_logbook(_aged("old-failed", states.FAILURE, timedelta(days=40)))
        conn.save_logbook(_aged("running", states.RUNNING, timedelta(days=40)))
        conn.save_logbook(_aged("new", states.SUCCESS, timedelta(hours=1)))
    outcome = cli("--backend", sqlite_uri, "purge", "--older-than", "30d", "--dry-run", "--json")
    assert outcome.exit_code == 0 and json.loads(outcome.stdout) == {"would_purge": 1}
    outcome = cli("--backend", sqlite_uri, "purge", "--older-than", "30d", "--json")
    assert json.loads(outcome.stdout) == {"purged": 1}
    outcome = cli("--backend", sqlite_uri, "purge", "--older-than", "2h", "--state", "failure")
    assert outcome.exit_code == 0 and outcome.stdout.startswith("purged 1 book from ")
    with lf.open_backend(sqlite_uri) as backend, backend.connect() as conn:
        assert {book.name for book in conn.list_logbooks()} == {"running", "new"}


def test_purge_bad_input_and_missing_store(cli: Runner, tmp_path: Path) -> None:
    missing = f"sqlite:///{tmp_path / 'nothing.db'}"
    outcome = cli("--backend", missing, "purge", "--older-than", "1d", "--json")
    assert outcome.exit_code == 0 and json.loads(outcome.stdout) == {"purged": 0}
    assert not (tmp_path / "nothing.db").exists()
    assert_one_line_error(cli("--backend", missing, "purge", "--older-than", "3w"), 2, "3w")
    assert_one_line_error(
        cli("--backend", missing, "purge", "--older-than", "1d", "--state", "RUNNING"), 2, "RUNNING"
    )
    assert_one_line_error(cli("--backend", missing, "purge"), 2, "--older-than")


def test_show_prints_a_record_with_an_unknown_state_and_says_so(
    cli: Runner, sqlite_uri: str, store: lf.LogBook
) -> None:
    task = store.flows[0].tasks[0]
    with sqlite3.connect(_sqlite_file(sqlite_uri)) as raw:
        raw.execute(
            "UPDATE ledgerflow_task_details SET state = 'BOGUS' WHERE uuid = ?", (task.uuid,)
        )
    for args in ((), ("--json",)):
        outcome = cli("--backend", sqlite_uri, "show", store.uuid, *args)
        assert_one_line_error(outcome, 1, f"task detail {task.uuid}", "'BOGUS'", "ledgerflow check")
        assert task.name in outcome.stdout


def test_flows_lists_the_others_beside_a_corrupt_flow(
    cli: Runner, sqlite_uri: str, store: lf.LogBook
) -> None:
    flow = store.flows[0]
    with sqlite3.connect(_sqlite_file(sqlite_uri)) as raw:
        raw.execute(f"UPDATE {FLOWS.name} SET meta = '{{oops' WHERE uuid = ?", (flow.uuid,))
    outcome = cli("--backend", sqlite_uri, "flows")
    assert_one_line_error(outcome, 1, "1 corrupt record is listed")
    lines = outcome.stdout.strip().splitlines()
    assert len(lines) == 2
    assert any(line.startswith("CORRUPT") and flow.uuid in line for line in lines)
    outcome = cli("--backend", sqlite_uri, "flows", "--json")
    assert outcome.exit_code == 1
    assert sorted("corrupt" in entry for entry in json.loads(outcome.stdout)) == [False, True]
