"""``ledgerflow flows``: flow runs newest first with state, owner and duration."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

import ledgerflow as lf
from ledgerflow import states
from ledgerflow.cli.flows import parse_duration
from ledgerflow.models import utcnow
from tests.cli.conftest import Runner, sample_book

TTY = {"TTY_COMPATIBLE": "1", "NO_COLOR": "1"}


def _old_book(name: str, hours: float) -> lf.LogBook:
    book = sample_book(name, tasks=1, failed=False)
    when = utcnow() - timedelta(hours=hours)
    book.created_at = book.flows[0].created_at = book.flows[0].updated_at = when
    return book


def test_lists_flows_newest_first_with_state_and_duration(
    any_cli: Runner, sqlite_uri: str, store: lf.LogBook
) -> None:
    outcome = any_cli("--backend", sqlite_uri, "flows")
    assert outcome.exit_code == 0, outcome.stderr
    lines = outcome.stdout.splitlines()
    assert len(lines) == 2  # piped: one line per flow
    assert store.flows[0].uuid in lines[0] and "REVERTED" in lines[0]
    assert "backup  SUCCESS" in lines[1]
    # sample_book's tasks span 2 s apart from the first start to the last finish
    assert "s  -" in lines[1]


def test_json_has_the_contract_keys(cli: Runner, sqlite_uri: str, store: lf.LogBook) -> None:
    printed = json.loads(cli("--backend", sqlite_uri, "flows", "--json").stdout)
    assert {"uuid", "name", "state", "book_uuid", "owner", "created_at", "updated_at"} <= set(
        printed[0]
    )
    assert printed[0]["book_uuid"] == store.uuid and printed[0]["owner"] is None
    assert printed[0]["state"] == states.REVERTED


def test_filters_by_state_name_and_since(cli: Runner, sqlite_uri: str) -> None:
    with lf.open_backend(sqlite_uri) as backend, backend.connect() as conn:
        conn.upgrade()
        conn.save_logbook(_old_book("old", hours=5))
        conn.save_logbook(_old_book("recent", hours=1))
        failed = sample_book("failed")
        conn.save_logbook(failed)

    def names(*args: str) -> list[str]:
        outcome = cli("--backend", sqlite_uri, "flows", *args, "--json")
        assert outcome.exit_code == 0, outcome.stderr
        return [flow["book_uuid"] for flow in json.loads(outcome.stdout)]

    assert len(names()) == 3
    assert names("--state", "reverted") == [failed.uuid]
    assert len(names("--since", "2h")) == 2
    assert len(names("--since", "6h")) == 3
    assert names("--name", "nope") == []
    nothing = cli("--backend", sqlite_uri, "flows", "--state", "SUSPENDED", "--since", "30m")
    assert "no flows in state SUSPENDED created in the last 30m00s (3 flows in all)" in (
        nothing.stdout
    )


def test_a_terminal_gets_a_header_the_newest_20_and_a_footer(cli: Runner, sqlite_uri: str) -> None:
    with lf.open_backend(sqlite_uri) as backend, backend.connect() as conn:
        conn.upgrade()
        for index in range(23):
            conn.save_logbook(_old_book(f"b{index}", hours=index / 10))
    lines = cli("--backend", sqlite_uri, "flows", env=TTY).stdout.splitlines()
    assert lines[0].split()[:4] == ["UUID", "CREATED", "(UTC)", "NAME"]
    assert len(lines) == 22
    assert lines[-1] == "flows 1-20 of 23; 3 more: --limit N or --all"
    assert len(cli("--backend", sqlite_uri, "flows", "--all", env=TTY).stdout.splitlines()) == 25


def test_bad_since_is_a_usage_error(cli: Runner, sqlite_uri: str, store: lf.LogBook) -> None:
    outcome = cli("--backend", sqlite_uri, "flows", "--since", "yesterday")
    assert outcome.exit_code == 2
    assert "bad duration 'yesterday'" in outcome.stderr


def test_missing_store_lists_nothing_and_creates_nothing(any_cli: Runner, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'absent.db'}"
    assert "no flows" in any_cli("--backend", uri, "flows").stdout
    assert json.loads(any_cli("--backend", uri, "flows", "--json").stdout) == []
    assert not list(tmp_path.glob("absent.db*"))


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("15m", 900), ("2h", 7200), ("7d", 604800), ("1.5h", 5400)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds
