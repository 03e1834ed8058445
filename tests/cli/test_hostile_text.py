"""Stored names and messages are data: they never break lines, style or the terminal."""

from __future__ import annotations

import json
from pathlib import Path

import ledgerflow as lf
from tests.cli.conftest import Runner

HOSTILE = ["two\nlines", "[bold red]markup[/] \x1b[31mansi", "[/closing]"]


def test_books_prints_one_line_per_book_whatever_the_names(cli: Runner, sqlite_uri: str) -> None:
    with lf.open_backend(sqlite_uri) as backend, backend.connect() as conn:
        conn.upgrade()
        books = [conn.save_logbook(lf.LogBook(name)) for name in HOSTILE]
    outcome = cli("--backend", sqlite_uri, "books", "--oldest-first")
    assert outcome.exit_code == 0, outcome.stderr
    lines = outcome.stdout.splitlines()
    assert len(lines) == len(books)
    assert "\x1b" not in outcome.stdout
    assert "two\\nlines" in lines[0]
    assert "[bold red]markup[/] \\x1b[31mansi" in lines[1]
    assert "[/closing]" in lines[2]


def test_show_escapes_names_and_keeps_every_line_of_a_failure(cli: Runner, sqlite_uri: str) -> None:
    book = lf.LogBook("[b]book[/b]")
    flow = lf.FlowDetail("fl\x1bow")
    task = lf.TaskDetail("ta\nsk", state=lf.states.FAILURE)
    task.failure = lf.Failure(("pkg.Boom",), "first line\nsecond [/line]")
    flow.add(task)
    book.add(flow)
    with lf.open_backend(sqlite_uri) as backend, backend.connect() as conn:
        conn.upgrade()
        conn.save_logbook(book)
    outcome = cli("--backend", sqlite_uri, "show", book.uuid)
    assert outcome.exit_code == 0, outcome.stderr
    assert "[b]book[/b]" in outcome.stdout and "fl\\x1bow" in outcome.stdout
    assert "ta\\nsk  FAILURE" in outcome.stdout
    assert "Boom: first line" in outcome.stdout and "second [/line]" in outcome.stdout


def test_a_uri_with_brackets_is_printed_as_is(cli: Runner, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / '[/x]y.db'}"
    outcome = cli("--backend", uri, "books")
    assert outcome.exit_code == 0, outcome.stderr
    assert "[/x]y.db" in outcome.stdout


def test_an_ascii_only_stdout_gets_escapes_not_a_crash(
    cli_process: Runner, sqlite_uri: str
) -> None:
    book = lf.LogBook("bücher")
    book.add(lf.FlowDetail("flöw"))
    with lf.open_backend(sqlite_uri) as backend, backend.connect() as conn:
        conn.upgrade()
        conn.save_logbook(book)
    ascii_only = {"PYTHONIOENCODING": "ascii"}
    for args in (["books"], ["show", book.uuid]):
        outcome = cli_process("--backend", sqlite_uri, *args, env=ascii_only)
        assert outcome.exit_code == 0, outcome.stderr
        assert "b\\xfccher" in outcome.stdout
    outcome = cli_process("--backend", sqlite_uri, "books", "--json", env=ascii_only)
    assert json.loads(outcome.stdout)[0]["name"] == "bücher"  # still valid JSON
