"""``ledgerflow resume`` and ``ledgerflow demo``: flows run by the engine, seen through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

import ledgerflow as lf
from ledgerflow import states
from tests.cli.conftest import Runner, assert_one_line_error
from tests.cli.flows import FACTORY

ROOT = str(Path(__file__).resolve().parents[2])


def _failed_flow(sqlite_uri: str, blocker: Path) -> str:
    """Run the order flow until ``charge`` fails (the flow ends REVERTED); return its uuid."""
    blocker.touch()
    engine = lf.load(
        FACTORY, store={"item": "lamp", "blocker": str(blocker)}, backend=sqlite_uri, book="shop"
    )
    with pytest.raises(lf.FlowFailed):
        engine.run()
    flow_uuid: str = engine.flow_detail.uuid
    return flow_uuid


def test_resume_runs_a_reverted_flow_again_to_success(
    any_cli: Runner, sqlite_uri: str, tmp_path: Path
) -> None:
    blocker = tmp_path / "gateway-down"
    flow_uuid = _failed_flow(sqlite_uri, blocker)
    shown = any_cli("--backend", sqlite_uri, "show", flow_uuid, env={"PYTHONPATH": ROOT})
    assert "charge  REVERTED" in shown.stdout
    assert "failure: ConnectionError: payment gateway unreachable" in shown.stdout
    blocker.unlink()
    outcome = any_cli("--backend", sqlite_uri, "resume", flow_uuid, env={"PYTHONPATH": ROOT})
    assert outcome.exit_code == 0, outcome.stderr
    assert f"flow order SUCCESS  {flow_uuid}" in outcome.stdout
    assert 'receipt = "receipt-lamp-2"' in outcome.stdout
    assert "task charge SUCCESS" in outcome.stderr  # the live progress display
    with lf.open_backend(sqlite_uri) as backend, backend.connect() as conn:
        assert conn.get_flow_details(flow_uuid).state == states.SUCCESS


def test_resume_of_a_flow_that_fails_again_exits_1(
    any_cli: Runner, sqlite_uri: str, tmp_path: Path
) -> None:
    flow_uuid = _failed_flow(sqlite_uri, tmp_path / "gateway-down")
    outcome = any_cli("--backend", sqlite_uri, "resume", flow_uuid, env={"PYTHONPATH": ROOT})
    assert outcome.exit_code == 1
    last = outcome.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: flow 'order' failed")
    assert "payment gateway unreachable" in last
    assert "Traceback" not in outcome.stderr


@pytest.mark.slow
def test_demo_kills_a_child_resumes_and_shows_success(cli_process: Runner, tmp_path: Path) -> None:
    outcome = cli_process("demo", timeout=120)
    assert outcome.exit_code == 0, outcome.stderr
    out = outcome.stdout
    assert "killed child pid" in out and "(SIGKILL)" in out
    assert "copy_data  RUNNING" in out  # what the store held after the crash
    assert "flow publish-dataset  SUCCESS  5 tasks: 5 SUCCESS" in out
    assert "flow publish-dataset SUCCESS: published https://data.example.com/" in out
    assert "\\n" not in out  # no escaped newline leaks into the summary
    assert (tmp_path / "ledgerflow.db").exists()  # the default store, in the working directory
    books = cli_process("books")
    assert "demo" in books.stdout and "5 SUCCESS" in books.stdout


def test_demo_refuses_a_store_only_one_process_can_see(cli: Runner) -> None:
    outcome = cli("--backend", "memory://", "demo")
    assert_one_line_error(outcome, 2, "two processes")
