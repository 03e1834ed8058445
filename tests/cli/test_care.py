"""``ledgerflow check``, ``ledgerflow purge``, and corrupt records in ``books`` listings."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

import ledgerflow as lf
from ledgerflow import states
from ledgerflow.models import utcnow
from ledgerflow.persistence.files import documents
from ledgerflow.persistence.sql.tables import BOOKS, FLOWS, TASKS
from tests.cli.conftest import Runner, assert_one_line_error, sample_book
from tests.corrupting import NOT_A_TIME, garble


def _sqlite_file(uri: str) -> Path:
    return Path(uri.removeprefix("sqlite:///"))


def _spoil(uri: str, table: str, column: str, value: str, uuid: str) -> None:
    """Write ``value`` into one stored row behind ledgerflow's back."""
    with sqlite3.connect(_sqlite_file(uri)) as raw:
        raw.execute(f"UPDATE {table} SET {column} = ? WHERE uuid = ?", (value, uuid))


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
    _spoil(sqlite_uri, FLOWS.name, "state", "BOGUS", flow.uuid)
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
    _spoil(sqlite_uri, BOOKS.name, "meta", "{oops", store.uuid)
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
    _spoil(sqlite_uri, FLOWS.name, "meta", "{oops", flow.uuid)
    outcome = cli("--backend", sqlite_uri, "flows")
    assert_one_line_error(outcome, 1, "1 corrupt record is listed")
    lines = outcome.stdout.strip().splitlines()
    assert len(lines) == 2
    assert any(line.startswith("CORRUPT") and flow.uuid in line for line in lines)
    outcome = cli("--backend", sqlite_uri, "flows", "--json")
    assert outcome.exit_code == 1
    assert sorted("corrupt" in entry for entry in json.loads(outcome.stdout)) == [False, True]


def _file_store(root: Path, *names: str) -> list[lf.LogBook]:
    """A file store at ``root`` holding one sample book per name, oldest first."""
    with lf.open_backend(f"file://{root}") as backend, backend.connect() as conn:
        conn.upgrade()
        return [conn.save_logbook(sample_book(name)) for name in names]


def test_books_flows_and_show_on_a_file_store_list_around_corrupt_files(
    cli: Runner, tmp_path: Path
) -> None:
    root = tmp_path / "store"
    uri = f"file://{root}"
    first, bad, last = _file_store(root, "first", "bad", "last")
    book_file = root / documents.record_path("book", bad.uuid)
    book_file.write_bytes(book_file.read_bytes()[:25])  # truncated
    flow_file = root / documents.record_path("flow", last.flows[0].uuid)
    flow_file.write_text('{"kind": "flow", "row": {"uuid": 7}}')  # wrong types
    outcome = cli("--backend", uri, "books")
    assert_one_line_error(outcome, 1, "2 corrupt records are listed", "ledgerflow check")
    lines = outcome.stdout.strip().splitlines()
    assert len(lines) == 3 and sum(line.startswith(first.uuid) for line in lines) == 1
    [broken] = [line for line in lines if line.startswith("CORRUPT")]
    assert str(book_file) in broken
    [counted] = [line for line in lines if line.startswith(last.uuid)]
    assert "CORRUPT" in counted and str(flow_file) in counted  # its flow does not read
    entries = json.loads(cli("--backend", uri, "books", "--json").stdout)
    assert sorted("corrupt" in entry for entry in entries) == [False, True, True]
    outcome = cli("--backend", uri, "flows")
    assert_one_line_error(outcome, 1, "1 corrupt record is listed")
    lines = outcome.stdout.strip().splitlines()
    assert len(lines) == 3  # the corrupt book's flow reads on: its uuid was in the file
    assert sum(line.startswith("CORRUPT") and str(flow_file) in line for line in lines) == 1
    assert any(line.startswith(bad.flows[0].uuid) for line in lines)
    for uuid, path in ((bad.uuid, book_file), (last.flows[0].uuid, flow_file)):
        assert_one_line_error(cli("--backend", uri, "show", uuid), 1, uuid, str(path))
    assert book_file.read_bytes() and flow_file.read_text().endswith("7}}")  # left as found


@pytest.mark.parametrize("server", ["postgresql", "mysql"])
def test_flows_on_a_server_lists_around_a_time_that_is_no_time(
    cli: Runner, server: str, request: pytest.FixtureRequest
) -> None:
    uri: str = request.getfixturevalue(f"{server.replace('postgresql', 'postgres')}_uri")
    with lf.open_backend(uri) as backend, backend.connect() as conn:
        conn.upgrade()
        conn.clear_all()
        good, bad = conn.save_logbook(sample_book("good")), conn.save_logbook(sample_book())
    garble(uri, FLOWS.name, "created_at", bad.flows[0].uuid, *NOT_A_TIME[server])
    try:
        outcome = cli("--backend", uri, "flows")
        assert_one_line_error(outcome, 1, "1 corrupt record is listed")
        lines = outcome.stdout.strip().splitlines()
        assert len(lines) == 2 and any(line.startswith(good.flows[0].uuid) for line in lines)
        assert any(line.startswith("CORRUPT") and bad.flows[0].uuid in line for line in lines)
        outcome = cli("--backend", uri, "show", bad.flows[0].uuid)
        assert_one_line_error(outcome, 1, bad.flows[0].uuid, "corrupt")
    finally:
        with lf.open_backend(uri) as backend, backend.connect() as conn:
            conn.clear_all()


def test_flows_marks_only_the_corrupt_flow_when_it_is_the_oldest(
    cli: Runner, sqlite_uri: str, store: lf.LogBook
) -> None:
    with lf.open_backend(sqlite_uri) as backend, backend.connect() as conn:
        [(_, oldest)] = conn.list_flows(offset=1)
    _spoil(sqlite_uri, FLOWS.name, "meta", "{oops", oldest.uuid)
    outcome = cli("--backend", sqlite_uri, "flows")
    assert_one_line_error(outcome, 1, "1 corrupt record is listed")  # not its newer neighbour
    first, last = outcome.stdout.strip().splitlines()
    assert first.startswith(store.flows[0].uuid) and last.startswith("CORRUPT")


def _branches(stdout: str) -> list[str]:
    """The tree's lines below its header: flows, tasks and what stands for a corrupt one."""
    return [line for line in stdout.splitlines() if line[:1] in ("├", "└", "│", " ")]


def test_show_book_lists_the_flows_beside_a_corrupt_one_and_exits_1(
    cli: Runner, tmp_path: Path
) -> None:
    root = tmp_path / "store"
    uri = f"file://{root}"
    with lf.open_backend(uri) as backend, backend.connect() as conn:
        conn.upgrade()
        book = sample_book("three flows")
        for name in ("second", "third"):
            book.add(lf.FlowDetail(name, state=states.SUCCESS))
        book = conn.save_logbook(book)
    corrupt = book.flows[1]
    flow_file = root / documents.record_path("flow", corrupt.uuid)
    flow_file.write_bytes(b"{oops")
    outcome = cli("--backend", uri, "show", book.uuid)
    assert_one_line_error(outcome, 1, "1 corrupt record is listed", "ledgerflow check")
    flows = [line for line in _branches(outcome.stdout) if line.startswith(("├── ", "└── "))]
    assert [line.split()[1] for line in flows] == ["flow", "CORRUPT", "flow"]
    assert "backup" in flows[0] and "third" in flows[2]  # the others, in their places
    assert corrupt.uuid in flows[1] and str(flow_file) in flows[1]
    assert "step_3" in outcome.stdout  # the first flow's tasks read as usual
    outcome = cli("--backend", uri, "show", "--json", book.uuid)
    assert outcome.exit_code == 1
    data = json.loads(outcome.stdout)
    assert [flow["name"] for flow in data["flows"]] == ["backup", "third"]
    assert [entry["uuid"] for entry in data["corrupt"]] == [corrupt.uuid]
    assert flow_file.read_bytes() == b"{oops"  # left as found


def test_show_marks_a_corrupt_task_in_its_place_and_a_corrupt_book_above(
    cli: Runner, sqlite_uri: str, store: lf.LogBook
) -> None:
    flow = store.flows[0]
    broken = flow.tasks[1]
    _spoil(sqlite_uri, TASKS.name, "result", "{oops", broken.uuid)
    for uuid in (store.uuid, flow.uuid):
        outcome = cli("--backend", sqlite_uri, "show", uuid)
        assert_one_line_error(outcome, 1, "1 corrupt record is listed")
        tasks = [line for line in _branches(outcome.stdout) if "── " in line][1:]
        assert "step_0" in tasks[0] and "step_2" in tasks[2] and "notify" in tasks[-1]
        assert "CORRUPT" in tasks[1] and broken.uuid in tasks[1]
    _spoil(sqlite_uri, BOOKS.name, "meta", "{oops", store.uuid)
    outcome = cli("--backend", sqlite_uri, "show", flow.uuid)
    assert_one_line_error(outcome, 1, "2 corrupt records are listed")
    header, *_ = outcome.stdout.splitlines()
    assert header.startswith("book CORRUPT") and store.uuid in header
    assert "upload refused" in outcome.stdout  # the flow below it, as usual
    outcome = cli("--backend", sqlite_uri, "show", flow.tasks[0].uuid)
    assert_one_line_error(outcome, 1, "1 corrupt record is listed")
    assert outcome.stdout.startswith("book CORRUPT") and "step_0" in outcome.stdout
    data = json.loads(cli("--backend", sqlite_uri, "show", "--json", flow.uuid).stdout)
    assert data["corrupt_book"]["uuid"] == store.uuid
    assert broken.uuid in data["tasks"][1]["corrupt"]
