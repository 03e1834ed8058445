"""``ledgerflow show``: the tree of a book, flow or task, failures and a timeline."""

from __future__ import annotations

import json

import pytest

import ledgerflow as lf
from ledgerflow import states
from ledgerflow.cli import render
from tests.cli.conftest import Runner, sample_book


def test_book_tree_names_every_task_its_state_and_each_failure(
    any_cli: Runner, sqlite_uri: str, store: lf.LogBook
) -> None:
    outcome = any_cli("--backend", sqlite_uri, "show", store.uuid)
    assert outcome.exit_code == 0, outcome.stderr
    out = outcome.stdout
    assert "book nightly-backup" in out and store.uuid in out
    flow = store.flows[0]
    assert "flow backup  REVERTED  6 tasks" in out and flow.uuid in out
    for task in flow:
        line = next(line for line in out.splitlines() if f" {task.name}  " in line)
        assert task.state in line
    assert "failure: RuntimeError: upload refused: quota exceeded" in out
    assert '→ {"rows": 30}' in out
    assert "3 attempts" in out
    assert "Traceback" not in out
    assert "timeline" in out


def test_flow_and_task_uuids_show_their_part_of_the_tree(
    cli: Runner, sqlite_uri: str, store: lf.LogBook
) -> None:
    flow = store.flows[0]
    by_flow = cli("--backend", sqlite_uri, "show", flow.uuid)
    assert by_flow.exit_code == 0, by_flow.stderr
    assert "book nightly-backup" in by_flow.stdout and "step_3" in by_flow.stdout
    upload = flow.find_by_name("upload")
    assert upload is not None
    by_task = cli("--backend", sqlite_uri, "show", upload.uuid)
    assert by_task.exit_code == 0, by_task.stderr
    assert "upload  REVERTED" in by_task.stdout
    assert "step_0" not in by_task.stdout
    assert "RuntimeError: upload refused" in by_task.stdout
    assert "caused by: KeyError" in by_task.stdout


def test_verbose_adds_tracebacks_and_the_cause_chain(
    cli: Runner, sqlite_uri: str, store: lf.LogBook
) -> None:
    outcome = cli("--backend", sqlite_uri, "show", "--verbose", store.uuid)
    assert "Traceback (most recent call last)" in outcome.stdout
    assert "caused by: KeyError: 'volume vol-7 is full'" in outcome.stdout
    assert store.flows[0].tasks[0].uuid in outcome.stdout


class _FailsOnce(lf.Task):
    calls = 0

    def execute(self) -> str:
        type(self).calls += 1
        if type(self).calls == 1:
            raise ConnectionError("gateway down")
        return "ok"


def test_verbose_lists_every_try_with_its_failure_and_wait(cli: Runner, sqlite_uri: str) -> None:
    task = _FailsOnce(name="flaky", retry=lf.Retry(attempts=2, backoff=0.05))
    engine = lf.load(lf.LinearFlow("f", task), backend=sqlite_uri)
    engine.run()
    outcome = cli("--backend", sqlite_uri, "show", "-v", engine.flow_detail.uuid)
    assert outcome.exit_code == 0, outcome.stderr
    lines = [line.strip() for line in outcome.stdout.splitlines()]
    first = next(line for line in lines if line.startswith("try 1"))
    second = next(line for line in lines if line.startswith("try 2"))
    assert "FAILURE" in first and "ConnectionError: gateway down" in first
    assert "SUCCESS" in second and "wait" in second and "gateway" not in second
    plain = cli("--backend", sqlite_uri, "show", engine.flow_detail.uuid)
    assert "try 1" not in plain.stdout


@pytest.mark.parametrize("which", ["book", "flow", "task"])
def test_json_is_the_records_to_dict(
    any_cli: Runner, sqlite_uri: str, store: lf.LogBook, which: str
) -> None:
    with lf.open_backend(sqlite_uri) as backend, backend.connect() as conn:
        book = conn.get_logbook(store.uuid)
    record: lf.LogBook | lf.FlowDetail | lf.TaskDetail = {
        "book": book,
        "flow": book.flows[0],
        "task": book.flows[0].tasks[-2],
    }[which]
    outcome = any_cli("--backend", sqlite_uri, "show", record.uuid, "--json")
    assert outcome.exit_code == 0, outcome.stderr
    assert json.loads(outcome.stdout) == record.to_dict()


def test_a_huge_flow_lists_every_task_but_caps_the_timeline(cli: Runner, sqlite_uri: str) -> None:
    book = sample_book("huge", tasks=1500)
    with lf.open_backend(sqlite_uri) as backend, backend.connect() as conn:
        conn.upgrade()
        conn.save_logbook(book)
    outcome = cli("--backend", sqlite_uri, "show", book.uuid)
    assert outcome.exit_code == 0, outcome.stderr
    assert all(f" step_{index}  SUCCESS" in outcome.stdout for index in range(1500))
    timeline = outcome.stdout.split("\ntimeline", 1)[1].splitlines()
    assert f"({render.TIMELINE_ROWS} longest of 1501 tasks)" in timeline[0]
    assert len(timeline) == 1 + render.TIMELINE_ROWS


def test_timeline_makes_a_stuck_task_stand_out() -> None:
    flow = sample_book(tasks=3, failed=False).flows[0]
    stuck = lf.TaskDetail("stuck", state=states.RUNNING)
    stuck.started_at = flow.tasks[-1].finished_at
    flow.add(stuck)
    now = stuck.started_at + (stuck.started_at - flow.tasks[0].started_at) * 10  # type: ignore[operator]
    lines = [line.plain for line in render.timeline(flow.tasks, 80, now)]
    bars = {line.split()[0]: line.count("█") for line in lines[1:]}
    assert bars["stuck"] > 10 * bars["step_0"]
    assert lines[-1].endswith("…")


def test_missing_store_is_one_line_and_creates_nothing(cli: Runner, tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    outcome = cli("--backend", f"sqlite:///{tmp_path / 'none.db'}", "show", "some-uuid")
    assert outcome.exit_code == 1
    assert outcome.stderr.count("\n") == 1 and "does not exist" in outcome.stderr
    assert not list(tmp_path.iterdir())
