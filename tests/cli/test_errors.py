"""Bad input: one clear line on stderr, exit 2 for usage errors and 1 for the rest."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import ledgerflow as lf
from tests.cli.conftest import Runner, assert_one_line_error


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        ("nosuch://x", "no backend for scheme 'nosuch'"),
        ("runs.db", "not a backend URI: 'runs.db'"),
    ],
)
def test_bad_uri_is_a_usage_error(any_cli: Runner, uri: str, fragment: str) -> None:
    outcome = any_cli("--backend", uri, "books")
    assert_one_line_error(outcome, 2, fragment, "sqlite")


def test_unreachable_server_exits_1(any_cli: Runner) -> None:
    outcome = any_cli("--backend", "postgresql://postgres@127.0.0.1:1/nothing", "books")
    assert_one_line_error(outcome, 1, "127.0.0.1:1")


def test_unknown_uuid_exits_1(any_cli: Runner, sqlite_uri: str, store: lf.LogBook) -> None:
    outcome = any_cli("--backend", sqlite_uri, "show", "no-such-record")
    assert_one_line_error(outcome, 1, "no-such-record")


@pytest.mark.parametrize("command", ["show", "resume"])
@pytest.mark.parametrize("uuid", [" padded ", "x" * 300])
def test_malformed_uuid_is_a_usage_error(
    any_cli: Runner, sqlite_uri: str, store: lf.LogBook, command: str, uuid: str
) -> None:
    outcome = any_cli("--backend", sqlite_uri, command, uuid)
    assert_one_line_error(outcome, 2, "malformed")


def _mark_newer_schema(sqlite_uri: str) -> None:
    path = sqlite_uri.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE ledgerflow_alembic_version SET version_num = 'f00dfeed'")


@pytest.mark.parametrize("args", [["books"], ["show", "anything"], ["books", "--json"]])
def test_store_with_an_unusable_schema_exits_1(
    any_cli: Runner, sqlite_uri: str, store: lf.LogBook, args: list[str]
) -> None:
    _mark_newer_schema(sqlite_uri)
    outcome = any_cli("--backend", sqlite_uri, *args)
    assert_one_line_error(outcome, 1, "newer version of ledgerflow")


def test_store_missing_its_version_needs_upgrade(
    cli: Runner, sqlite_uri: str, store: lf.LogBook
) -> None:
    with sqlite3.connect(sqlite_uri.removeprefix("sqlite:///")) as conn:
        conn.execute("DROP TABLE ledgerflow_alembic_version")
    outcome = cli("--backend", sqlite_uri, "books")
    assert_one_line_error(outcome, 1, "ledgerflow upgrade")


def test_debug_shows_the_traceback(cli_process: Runner, sqlite_uri: str, store: lf.LogBook) -> None:
    outcome = cli_process("--debug", "--backend", sqlite_uri, "show", "no-such-record")
    assert outcome.exit_code == 1
    assert "Traceback (most recent call last)" in outcome.stderr
    assert "ledgerflow.errors.NotFound" in outcome.stderr


def test_resume_of_an_unknown_flow_exits_1(
    any_cli: Runner, sqlite_uri: str, store: lf.LogBook
) -> None:
    outcome = any_cli("--backend", sqlite_uri, "resume", "no-such-flow")
    assert_one_line_error(outcome, 1, "no-such-flow")


def test_resume_on_a_missing_store_creates_nothing(cli: Runner, tmp_path: Path) -> None:
    outcome = cli("--backend", f"sqlite:///{tmp_path / 'gone.db'}", "resume", "some-flow")
    assert_one_line_error(outcome, 1, "does not exist")
    assert not list(tmp_path.iterdir())


def test_copy_from_a_missing_store_exits_1(cli: Runner, tmp_path: Path) -> None:
    outcome = cli("copy", f"sqlite:///{tmp_path / 'gone.db'}", f"sqlite:///{tmp_path / 'dst.db'}")
    assert_one_line_error(outcome, 1, "does not exist")
    assert not list(tmp_path.iterdir())
