"""``mypy --strict`` on typing examples: what must pass passes, each expected error appears."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mypy import api

HERE = Path(__file__).resolve().parent
EXPECTED = re.compile(r"#\s*E:\s*(?P<message>.+?)\s*$")


def _mypy(path: Path, tmp_path: Path) -> tuple[int, dict[int, list[str]]]:
    out, err, status = api.run(
        ["--strict", "--no-error-summary", "--cache-dir", str(tmp_path / "cache"), str(path)]
    )
    assert not err, err
    errors: dict[int, list[str]] = {}
    for line in out.splitlines():
        match = re.match(rf".*{re.escape(path.name)}:(\d+): error: (.*)", line)
        if match:
            errors.setdefault(int(match[1]), []).append(match[2])
    return status, errors


@pytest.mark.slow
def test_the_examples_that_must_type_check_do(tmp_path: Path) -> None:
    status, errors = _mypy(HERE / "examples_pass.py", tmp_path)
    assert errors == {} and status == 0


@pytest.mark.slow
def test_each_expected_error_is_reported_and_nothing_else(tmp_path: Path) -> None:
    path = HERE / "examples_fail.py"
    expected = {
        number: match["message"]
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if (match := EXPECTED.search(line))
    }
    status, errors = _mypy(path, tmp_path)
    assert status == 1
    assert set(errors) == set(expected), errors
    for number, message in expected.items():
        assert any(message in error for error in errors[number]), (number, errors[number])
