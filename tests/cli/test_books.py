"""``ledgerflow books``: one line per book, paged and filtered in the store, never writing."""

from __future__ import annotations

import json
from pathlib import Path

import ledgerflow as lf
from tests.cli.conftest import Runner, sample_book


def _book_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line[:1].isalnum() and "  " in line][1:]


def test_lists_one_line_per_book_newest_first_with_task_counts(
    any_cli: Runner, sqlite_uri: str, store: lf.LogBook
) -> None:
    outcome = any_cli("--backend", sqlite_uri, "books")
    assert outcome.exit_code == 0, outcome.stderr
    lines = outcome.stdout.splitlines()
    assert len(lines) == 2  # piped output: exactly the book lines
    assert "weekly-report" in lines[1] and "4 SUCCESS" in lines[1]
    assert store.uuid in lines[0] and "nightly-backup" in lines[0]
    assert "1 PENDING, 1 REVERTED, 4 SUCCESS" in lines[0]
    assert outcome.stderr == ""
    oldest = any_cli("--backend", sqlite_uri, "books", "--oldest-first").stdout.splitlines()
    assert oldest == lines[::-1]


def test_a_terminal_gets_a_header_and_a_footer(
    cli: Runner, sqlite_uri: str, store: lf.LogBook
) -> None:
    outcome = cli(
        "--backend",
        sqlite_uri,
        "books",
        "--newest-first",
        env={"TTY_COMPATIBLE": "1", "NO_COLOR": "1"},
    )
    lines = [line for line in outcome.stdout.splitlines() if line.strip()]
    assert lines[0].split() == ["UUID", "CREATED", "(UTC)", "NAME", "FLOWS", "TASKS"]
    assert store.uuid in lines[1] and "weekly-report" in lines[2]
    assert "books 1-2 of 2" in lines[3]


def test_every_book_is_listed_without_a_limit(cli: Runner, sqlite_uri: str) -> None:
    with lf.open_backend(sqlite_uri) as backend, backend.connect() as conn:
        conn.upgrade()
        for index in range(25):
            conn.save_logbook(lf.LogBook(f"book-{index:02d}"))
    assert len(cli("--backend", sqlite_uri, "books").stdout.splitlines()) == 25
    assert len(json.loads(cli("--backend", sqlite_uri, "books", "--json").stdout)) == 25


def test_json_is_the_books_to_dict_in_get_logbooks_order(
    any_cli: Runner, sqlite_uri: str, store: lf.LogBook
) -> None:
    outcome = any_cli("--backend", sqlite_uri, "books", "--oldest-first", "--json")
    assert outcome.exit_code == 0, outcome.stderr
    printed = json.loads(outcome.stdout)
    with lf.open_backend(sqlite_uri) as backend, backend.connect() as conn:
        stored = [conn.get_logbook(book.uuid).to_dict() for book in conn.get_logbooks()]
    assert printed == stored
    assert printed[1]["uuid"] == store.uuid
    assert printed[1]["flows"][0]["tasks"][0]["name"] == "step_0"


def test_pages_come_from_limit_offset_and_page(cli: Runner, sqlite_uri: str) -> None:
    with lf.open_backend(sqlite_uri) as backend, backend.connect() as conn:
        conn.upgrade()
        names = [f"book-{index:02d}" for index in range(7)]
        for name in names:
            conn.save_logbook(sample_book(name, tasks=1, failed=False))
    newest_first = names[::-1]

    def page(*args: str) -> list[str]:
        outcome = cli("--backend", sqlite_uri, "books", "--newest-first", *args, "--json")
        assert outcome.exit_code == 0, outcome.stderr
        return [book["name"] for book in json.loads(outcome.stdout)]

    assert page("--limit", "3") == newest_first[:3]
    assert page("--limit", "3", "--page", "2") == newest_first[3:6]
    assert page("--limit", "3", "--page", "3") == newest_first[6:]
    assert page("--limit", "2", "--offset", "5") == newest_first[5:]
    assert page("--limit", "3", "--page", "9") == []
    assert page("--page", "1") == newest_first  # --page alone: pages of 20
    text = cli(
        "--backend",
        sqlite_uri,
        "books",
        "--limit",
        "3",
        env={"TTY_COMPATIBLE": "1", "NO_COLOR": "1"},
    ).stdout
    assert "books 1-3 of 7; 4 more: --page 2 (or --offset 3), or --all" in text


def test_filters_by_name_and_by_flow_state(cli: Runner, sqlite_uri: str, store: lf.LogBook) -> None:
    by_name = cli("--backend", sqlite_uri, "books", "--name", "weekly-report", "--json")
    assert [book["name"] for book in json.loads(by_name.stdout)] == ["weekly-report"]
    by_state = cli("--backend", sqlite_uri, "books", "--state", "reverted", "--json")
    assert [book["uuid"] for book in json.loads(by_state.stdout)] == [store.uuid]
    none = cli("--backend", sqlite_uri, "books", "--state", "SUSPENDED")
    assert none.exit_code == 0
    assert "no logbooks with a flow in state SUSPENDED (2 books in all)" in none.stdout
    unnamed = cli("--backend", sqlite_uri, "books", "--name", "nope")
    assert "no logbooks named 'nope' (2 books in all)" in unnamed.stdout


def test_each_line_tells_the_flow_state(
    any_cli: Runner, sqlite_uri: str, store: lf.LogBook
) -> None:
    lines = any_cli("--backend", sqlite_uri, "books").stdout.splitlines()
    assert "nightly-backup  REVERTED  1 PENDING" in lines[0]
    assert "weekly-report  SUCCESS  4 SUCCESS" in lines[1]


def test_a_terminal_shows_the_newest_20_and_says_how_many_more(
    cli: Runner, sqlite_uri: str
) -> None:
    with lf.open_backend(sqlite_uri) as backend, backend.connect() as conn:
        conn.upgrade()
        for index in range(45):
            conn.save_logbook(lf.LogBook(f"book-{index:02d}"))
    tty = {"TTY_COMPATIBLE": "1", "NO_COLOR": "1"}
    lines = cli("--backend", sqlite_uri, "books", env=tty).stdout.splitlines()
    assert len(lines) == 22  # header, 20 books, footer
    assert "book-44" in lines[1] and "book-25" in lines[20]
    assert lines[-1] == "books 1-20 of 45; 25 more: --page 2 (or --offset 20), or --all"
    everything = cli("--backend", sqlite_uri, "books", "--all", env=tty).stdout.splitlines()
    assert len(everything) == 47 and everything[-1] == "books 1-45 of 45"
    piped = cli("--backend", sqlite_uri, "books").stdout.splitlines()
    assert len(piped) == 45
    assert cli("--backend", sqlite_uri, "books", "--all", "--limit", "2").exit_code == 2


def test_piped_listing_walks_pages_past_the_keyset_limit(cli: Runner, sqlite_uri: str) -> None:
    with lf.open_backend(sqlite_uri) as backend, backend.connect() as conn:
        conn.upgrade()
        book = lf.LogBook("many")
        conn.save_logbook(book)
        for index in range(1203):
            conn.save_logbook(lf.LogBook(f"b{index}"))
    lines = cli("--backend", sqlite_uri, "books").stdout.splitlines()
    assert len(lines) == 1204 and len(set(lines)) == 1204
    assert book.uuid in lines[-1]
    some = cli("--backend", sqlite_uri, "books", "--offset", "1000", "--limit", "203").stdout
    assert len(some.splitlines()) == 203


def test_backend_comes_from_the_environment(
    cli: Runner, sqlite_uri: str, store: lf.LogBook
) -> None:
    outcome = cli("books", env={"LEDGERFLOW_BACKEND": sqlite_uri})
    assert store.uuid in outcome.stdout


def test_offset_and_page_together_is_a_usage_error(cli: Runner, sqlite_uri: str) -> None:
    outcome = cli("--backend", sqlite_uri, "books", "--offset", "1", "--page", "2")
    assert outcome.exit_code == 2
    assert outcome.stderr.strip() == "Error: give --offset or --page, not both"


def test_missing_store_prints_nothing_and_creates_nothing(any_cli: Runner, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'absent.db'}"
    text = any_cli("--backend", uri, "books")
    assert text.exit_code == 0, text.stderr
    assert "no logbooks" in text.stdout
    as_json = any_cli("--backend", uri, "books", "--json")
    assert json.loads(as_json.stdout) == []
    assert not list(tmp_path.glob("absent.db*"))


def test_default_store_is_ledgerflow_db_in_the_working_directory(
    cli_process: Runner, tmp_path: Path
) -> None:
    outcome = cli_process("books")
    assert outcome.exit_code == 0, outcome.stderr
    assert "sqlite:///ledgerflow.db" in outcome.stdout
    assert not list(tmp_path.iterdir())


def test_store_without_schema_reads_as_empty_and_stays_so(cli: Runner, tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "blank.db"
    sqlite3.connect(path).close()
    outcome = cli("--backend", f"sqlite:///{path}", "books", "--json")
    assert outcome.exit_code == 0, outcome.stderr
    assert json.loads(outcome.stdout) == []
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == []
    # not even its header: switching an empty file to WAL would write one
    assert path.stat().st_size == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blank.db"]


def test_force_color_does_not_add_a_header(cli: Runner, sqlite_uri: str, store: lf.LogBook) -> None:
    outcome = cli("--backend", sqlite_uri, "books", env={"FORCE_COLOR": "1"})
    assert len(outcome.stdout.splitlines()) == 2
