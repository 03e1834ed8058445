"""The CLI's entry points: the console script and ``python -m ledgerflow``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.cli.conftest import SRC, Runner, process_env

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def test_pyproject_names_the_console_script() -> None:
    pyproject = tomllib.loads((SRC.parent / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["ledgerflow"] == "ledgerflow.cli:main"


def test_python_dash_m_runs_the_cli(cli_process: Runner) -> None:
    outcome = cli_process("--help")
    assert outcome.exit_code == 0
    for command in ("books", "show", "resume", "upgrade", "copy", "demo"):
        assert command in outcome.stdout
    assert "_demo-child" not in outcome.stdout


def test_installed_console_script(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("ledgerflow")
    found = str(script) if script.exists() else shutil.which("ledgerflow")
    if found is None:
        message = "the ledgerflow console script is not installed (pip install -e .)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    uri = f"sqlite:///{tmp_path / 'runs.db'}"
    done = subprocess.run(
        [found, "--backend", uri, "books", "--json"],
        capture_output=True,
        text=True,
        env=process_env(),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    bad = subprocess.run(
        [found, "--backend", "bogus://", "books"],
        capture_output=True,
        text=True,
        env=process_env(),
        timeout=60,
    )
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
