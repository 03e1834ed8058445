"""README.md's walkthrough, run exactly as written: its jobs.py and its shell commands.

The commands are read from README.md itself and run by bash in an empty temporary
directory, with the virtual environment's ``bin`` first on PATH (so ``ledgerflow`` is
the installed console script) and without PYTHONPATH, as a new user would run them.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent
#: The uuid README prints; each run prints its own.
README_UUID = "2798ae75-ec3c-43c4-961b-18deedfa5b65"


@dataclass
class Step:
    """One ``$ command`` of a console block and the lines README shows after it."""

    command: str
    output: list[str] = field(default_factory=list)


def _fenced_blocks(text: str) -> list[tuple[str, str]]:
    return [(m[1], m[2]) for m in re.finditer(r"```(\w*)\n(.*?)```", text, re.S)]


def _complete(command: str) -> bool:
    try:
        shlex.split(command)
    except ValueError:  # an open quote: the command goes on on the next line
        return False
    return True


def _steps(console: str) -> list[Step]:
    steps: list[Step] = []
    lines = iter(console.splitlines())
    for line in lines:
        if line.startswith("$ "):
            command = line[2:]
            while not _complete(command):
                command += "\n" + next(lines)
            steps.append(Step(command))
        elif steps:
            steps[-1].output.append(line)
    return steps


def walkthrough() -> tuple[str, list[Step]]:
    """README's jobs.py and the console block that follows it."""
    blocks = _fenced_blocks(README.read_text(encoding="utf-8"))
    for index, (language, body) in enumerate(blocks):
        if language == "python" and body.startswith("# jobs.py\n"):
            return body, _steps(blocks[index + 1][1])
    raise AssertionError("README.md has no '# jobs.py' block followed by a console block")


def _user_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "LEDGERFLOW_BACKEND"}}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", NO_COLOR="1", COLUMNS="120")
    return env


def _run(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        env=_user_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _is_subsequence(wanted: list[str], lines: list[str]) -> bool:
    remaining = iter(lines)
    return all(any(line == want for line in remaining) for want in wanted)


def test_readme_parses_into_the_walkthrough() -> None:
    source, steps = walkthrough()
    assert "def build()" in source
    assert [step.command.split()[0] for step in steps] == ["CRASH=1", "ledgerflow"]
    assert README_UUID in steps[1].command


@pytest.mark.slow
def test_the_readme_walkthrough_works_verbatim(tmp_path: Path) -> None:
    assert (BIN / "ledgerflow").exists(), f"the console script is not installed in {BIN}"
    source, (crash, resume) = walkthrough()
    (tmp_path / "jobs.py").write_text(source, encoding="utf-8")

    crashed = _run(crash.command, tmp_path)
    # "Killed" is the shell's report of the SIGKILL (bash -c may exec the command itself).
    assert crashed.returncode in (-9, 128 + 9), crashed.stderr
    printed = crashed.stdout.splitlines()
    flow_uuid = printed[0]
    assert re.fullmatch(r"[0-9a-f-]{36}", flow_uuid), crashed.stdout
    assert crash.output == [README_UUID, *printed[1:], "Killed"], crashed.stdout

    command = resume.command.replace(README_UUID, flow_uuid)
    assert command.startswith("ledgerflow ")
    resumed = _run(command, tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    expected = [line.replace(README_UUID, flow_uuid) for line in resume.output]
    stdout = resumed.stdout.splitlines()
    assert stdout == [line for line in expected if line in stdout], (stdout, expected)
    assert _is_subsequence(expected, resumed.stderr.split("\n") + stdout), resumed.stderr
    assert "creating a VM" not in resumed.stdout + resumed.stderr  # create_vm did not rerun


def test_resume_from_elsewhere_names_the_factory_and_where_it_looked(tmp_path: Path) -> None:
    source, (crash, _resume) = walkthrough()
    (tmp_path / "jobs.py").write_text(source, encoding="utf-8")
    crashed = _run(crash.command.replace("CRASH=1 ", "", 1), tmp_path)
    assert crashed.returncode == 0, crashed.stderr
    flow_uuid = crashed.stdout.splitlines()[0]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    outcome = _run(f"ledgerflow --backend sqlite:///../runs.db resume {flow_uuid}", elsewhere)
    assert outcome.returncode == 1
    lines = outcome.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in outcome.stderr, outcome.stderr
    assert "'jobs:build'" in lines[0] and "no module named 'jobs'" in lines[0]
    assert f"working directory {elsewhere}" in lines[0]
    # The console script's own directory heads sys.path (Python resolves its symlinks).
    assert str(BIN) in lines[0] or str(BIN.resolve()) in lines[0]
