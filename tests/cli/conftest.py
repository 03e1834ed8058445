"""Fixtures for the command line: SQLite stores with sample runs, and two ways to run it.

``cli`` drives the command in-process through click's CliRunner; ``cli_process``
runs ``python -m ledgerflow`` as a real subprocess (what a user's shell does).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

import ledgerflow as lf
from ledgerflow import states
from ledgerflow.cli import cli as cli_group
from ledgerflow.models import utcnow

SRC = Path(__file__).resolve().parents[2] / "src"


@dataclass
class Outcome:
    """What a CLI run produced, the same shape for both ways of running it."""

    exit_code: int
    stdout: str
    stderr: str


Runner = Callable[..., Outcome]


def _failure(message: str) -> lf.Failure:
    try:
        try:
            raise KeyError("volume vol-7 is full")
        except KeyError as exc:
            raise RuntimeError(message) from exc
    except RuntimeError as exc:
        return lf.Failure.from_exception(exc)


def sample_book(name: str = "nightly-backup", tasks: int = 4, failed: bool = True) -> lf.LogBook:
    """A book with one flow: SUCCESS tasks with results, then (if ``failed``) a failure."""
    book = lf.LogBook(name, meta={"owner": "ops"})
    flow = lf.FlowDetail("backup", state=states.REVERTED if failed else states.SUCCESS)
    start = utcnow() - timedelta(minutes=5)
    for index in range(tasks):
        task = lf.TaskDetail(f"step_{index}", state=states.SUCCESS, result={"rows": index * 10})
        task.attempts = 1
        task.started_at = start + timedelta(seconds=2 * index)
        task.finished_at = task.started_at + timedelta(seconds=1.5)
        flow.add(task)
    if failed:
        broken = lf.TaskDetail("upload", state=states.REVERTED)
        broken.failure = _failure("upload refused: quota exceeded")
        broken.attempts = 3
        broken.started_at = start + timedelta(seconds=2 * tasks)
        broken.finished_at = broken.started_at + timedelta(seconds=4)
        flow.add(broken)
        flow.add(lf.TaskDetail("notify", state=states.PENDING))
    book.add(flow)
    return book


@pytest.fixture
def sqlite_uri(tmp_path: Path) -> str:
    """A SQLite URI whose file does not exist yet."""
    return f"sqlite:///{tmp_path / 'runs.db'}"


@pytest.fixture
def store(sqlite_uri: str) -> lf.LogBook:
    """A SQLite store at ``sqlite_uri`` holding a failed and a successful book; the failed one."""
    with lf.open_backend(sqlite_uri) as backend, backend.connect() as conn:
        conn.upgrade()
        conn.save_logbook(sample_book("weekly-report", failed=False))
        book = sample_book()
        conn.save_logbook(book)
    return book


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Runner:
    """Run ``ledgerflow ARGS`` in-process through click's CliRunner."""
    monkeypatch.delenv("LEDGERFLOW_BACKEND", raising=False)

    def run(*args: str, env: dict[str, str] | None = None) -> Outcome:
        result = CliRunner().invoke(cli_group, list(args), env=env, catch_exceptions=False)
        return Outcome(result.exit_code, result.stdout, result.stderr)

    return run


def process_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a subprocess: this ledgerflow importable, no colour, wide lines."""
    env = {k: v for k, v in os.environ.items() if k != "LEDGERFLOW_BACKEND"}
    extra = dict(extra or {})
    paths = (str(SRC), extra.pop("PYTHONPATH", None), env.get("PYTHONPATH"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env.update({"NO_COLOR": "1", "COLUMNS": "120", **extra})
    return env


@pytest.fixture
def cli_process(tmp_path: Path) -> Runner:
    """Run ``python -m ledgerflow ARGS`` as a subprocess in ``tmp_path``."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Outcome:
        done = subprocess.run(
            [sys.executable, "-m", "ledgerflow", *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=process_env(env),
            timeout=timeout,
        )
        return Outcome(done.returncode, done.stdout, done.stderr)

    return run


@pytest.fixture(params=["runner", "process"])
def any_cli(request: pytest.FixtureRequest) -> Runner:
    """Each way of running the CLI in turn."""
    name = "cli" if request.param == "runner" else "cli_process"
    runner: Runner = request.getfixturevalue(name)
    return runner


def assert_one_line_error(outcome: Outcome, exit_code: int, *fragments: str) -> None:
    """The run failed with ``exit_code`` and exactly one stderr line naming the fragments."""
    assert outcome.exit_code == exit_code, (outcome.stdout, outcome.stderr)
    lines = outcome.stderr.strip().splitlines()
    assert len(lines) == 1, outcome.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in outcome.stderr
    for fragment in fragments:
        assert fragment in lines[0]
