"""``ledgerflow jobs`` and its subcommands, through the entry point."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Runner, assert_one_line_error

FACTORY = "tests.jobs.job_flows:one_task"


def test_jobs_on_a_missing_store_prints_empty_and_creates_nothing(
    any_cli: Runner, sqlite_uri: str, tmp_path: Path
) -> None:
    listed = any_cli("--backend", sqlite_uri, "jobs")
    assert listed.exit_code == 0 and "no jobs" in listed.stdout
    as_json = any_cli("--backend", sqlite_uri, "jobs", "--json")
    assert as_json.exit_code == 0 and json.loads(as_json.stdout) == []
    assert not (tmp_path / "runs.db").exists()


def test_jobs_on_a_logbook_store_without_job_tables(cli: Runner, sqlite_uri: str) -> None:
    assert cli("--backend", sqlite_uri, "upgrade").exit_code == 0
    assert json.loads(cli("--backend", sqlite_uri, "jobs", "--json").stdout) == []
    import sqlalchemy as sa

    engine = sa.create_engine(sqlite_uri)
    with engine.connect() as conn:
        assert "ledgerflow_jobs" not in sa.inspect(conn).get_table_names()
    engine.dispose()


def test_post_list_show(cli: Runner, sqlite_uri: str) -> None:
    posted = cli(
        "--backend", sqlite_uri, "jobs", "post", FACTORY,
        "--store", '{"n": 3}', "--key", "k", "--priority", "4", "--delay", "0", "--json",
    )  # fmt: skip
    assert posted.exit_code == 0, posted.stderr
    job = json.loads(posted.stdout)
    assert (job["name"], job["priority"], job["key"], job["state"]) == (FACTORY, 4, "k", "READY")
    again = json.loads(
        cli("--backend", sqlite_uri, "jobs", "post", FACTORY, "--key", "k", "--json").stdout
    )
    assert again["uuid"] == job["uuid"]
    listed = cli("--backend", sqlite_uri, "jobs", "--state", "READY", "--json")
    assert [j["uuid"] for j in json.loads(listed.stdout)] == [job["uuid"]]
    assert job["uuid"] in cli("--backend", sqlite_uri, "jobs").stdout
    assert (
        cli("--backend", sqlite_uri, "jobs", "--state", "DONE").stdout.strip()
        == "no jobs in state DONE"
    )
    shown = cli("--backend", sqlite_uri, "jobs", "show", job["uuid"])
    assert shown.exit_code == 0 and "READY" in shown.stdout and FACTORY in shown.stdout


def test_board_option_and_environment(cli: Runner, sqlite_uri: str, tmp_path: Path) -> None:
    board = f"sqlite:///{tmp_path / 'board.db'}"
    posted = cli(
        "--backend", sqlite_uri, "jobs", "post", FACTORY, "--json", env={"LEDGERFLOW_BOARD": board}
    )
    job = json.loads(posted.stdout)
    assert (
        cli("--backend", sqlite_uri, "jobs", "--board", board, "--json").stdout.count(job["uuid"])
        == 1
    )
    assert json.loads(cli("--backend", sqlite_uri, "jobs", "--json").stdout) == []


def test_bad_input_is_one_line(any_cli: Runner, sqlite_uri: str) -> None:
    base = ("--backend", sqlite_uri, "jobs")
    assert_one_line_error(any_cli(*base, "post", "not-a-factory"), 2, "factory")
    assert_one_line_error(any_cli(*base, "post", FACTORY, "--store", "{nope"), 2, "--store")
    assert_one_line_error(any_cli(*base, "post", FACTORY, "--delay", "-1"), 2, "delay")
    assert_one_line_error(any_cli(*base, "post", FACTORY, "--max-attempts", "0"), 2, "max_attempts")
    assert_one_line_error(any_cli(*base, "show", "no-such-job"), 1, "no-such-job")
    assert_one_line_error(any_cli(*base, "--board", "ftp://x/y"), 2, "board schemes")
