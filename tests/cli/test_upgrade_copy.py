"""``ledgerflow upgrade`` and ``ledgerflow copy``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import ledgerflow as lf
from ledgerflow import states
from tests.cli.conftest import Runner, sample_book


def _without_revisions(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_revisions(v) for k, v in value.items() if k != "revision"}
    if isinstance(value, list):
        return [_without_revisions(v) for v in value]
    return value


def _dump(uri: str) -> list[dict[str, Any]]:
    with lf.open_backend(uri) as backend, backend.connect() as conn:
        return [book.to_dict() for book in conn.get_logbooks()]


def test_upgrade_creates_the_schema_and_is_idempotent(any_cli: Runner, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'new.db'}"
    for _ in range(2):
        outcome = any_cli("--backend", uri, "upgrade")
        assert outcome.exit_code == 0, outcome.stderr
        assert "schema is up to date" in outcome.stdout
    with lf.open_backend(uri) as backend, backend.connect() as conn:
        conn.validate()


def test_copy_preserves_every_field_but_revision_and_is_idempotent(
    any_cli: Runner, sqlite_uri: str, store: lf.LogBook, tmp_path: Path
) -> None:
    dst = f"sqlite:///{tmp_path / 'copy.db'}"
    first = any_cli("copy", sqlite_uri, dst)
    assert first.exit_code == 0, first.stderr
    assert "2 written, 0 already identical" in first.stdout
    source = _dump(sqlite_uri)
    assert _without_revisions(_dump(dst)) == _without_revisions(source)
    copied = _dump(dst)
    second = any_cli("copy", sqlite_uri, dst)
    assert second.exit_code == 0, second.stderr
    assert "0 written, 2 already identical" in second.stdout
    assert _dump(dst) == copied


def test_copy_overwrites_newer_destination_records_source_wins(
    cli: Runner, sqlite_uri: str, store: lf.LogBook, tmp_path: Path
) -> None:
    dst = f"sqlite:///{tmp_path / 'copy.db'}"
    assert cli("copy", sqlite_uri, dst).exit_code == 0
    with lf.open_backend(dst) as backend, backend.connect() as conn:
        book = conn.get_logbook(store.uuid)
        book.name = "renamed"
        book.flows[0].state = states.SUCCESS
        book.flows[0].tasks[0].result = "tampered"
        conn.save_logbook(book)
        conn.save_logbook(book)  # the destination's revisions now differ from the source's
    outcome = cli("copy", sqlite_uri, dst)
    assert outcome.exit_code == 0, outcome.stderr
    assert "1 written, 1 already identical" in outcome.stdout
    assert _without_revisions(_dump(dst)) == _without_revisions(_dump(sqlite_uri))


def test_copy_between_sqlite_and_the_file_store(
    cli: Runner, sqlite_uri: str, store: lf.LogBook, tmp_path: Path
) -> None:
    files = f"file://{tmp_path / 'files'}"
    back = f"sqlite:///{tmp_path / 'back.db'}"
    assert cli("copy", sqlite_uri, files).exit_code == 0
    assert cli("copy", files, back).exit_code == 0
    assert _without_revisions(_dump(back)) == _without_revisions(_dump(sqlite_uri))
    assert "0 written, 2 already identical" in cli("copy", sqlite_uri, files).stdout


def test_copy_to_the_same_store_is_a_usage_error(cli: Runner, sqlite_uri: str) -> None:
    outcome = cli("copy", sqlite_uri, sqlite_uri)
    assert outcome.exit_code == 2
    assert outcome.stderr.strip() == "Error: SRC_URI and DST_URI are the same store"


def test_copy_pages_through_many_books(cli: Runner, sqlite_uri: str, tmp_path: Path) -> None:
    with lf.open_backend(sqlite_uri) as backend, backend.connect() as conn:
        conn.upgrade()
        for index in range(450):
            conn.save_logbook(sample_book(f"b{index}", tasks=1, failed=False))
    dst = f"sqlite:///{tmp_path / 'copy.db'}"
    outcome = cli("copy", sqlite_uri, dst)
    assert "copied 450 books" in outcome.stdout
    assert len(_dump(dst)) == 450


@pytest.mark.postgres
def test_copy_between_sqlite_and_postgresql(
    cli: Runner, sqlite_uri: str, store: lf.LogBook, postgres_uri: str, tmp_path: Path
) -> None:
    with lf.open_backend(postgres_uri) as backend, backend.connect() as conn:
        conn.upgrade()
        conn.clear_all()
    try:
        assert cli("copy", sqlite_uri, postgres_uri).exit_code == 0
        back = f"sqlite:///{tmp_path / 'back.db'}"
        assert cli("copy", postgres_uri, back).exit_code == 0
        assert _without_revisions(_dump(back)) == _without_revisions(_dump(sqlite_uri))
        again = cli("copy", sqlite_uri, postgres_uri)
        assert "0 written, 2 already identical" in again.stdout
    finally:
        with lf.open_backend(postgres_uri) as backend, backend.connect() as conn:
            conn.upgrade()  # a fresh SQL backend's first write must not be its first statement
            conn.clear_all()
