"""Reading commands start light: no Alembic import, no migration check (issue 10)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import ledgerflow as lf
from ledgerflow.persistence.sql import migrate
from tests.cli.conftest import process_env, sample_book

PROBE = """
import sys
from ledgerflow.cli import cli
cli.main(args=sys.argv[1:], prog_name="ledgerflow", standalone_mode=False)
print("alembic loaded:", any(name.split(".")[0] == "alembic" for name in sys.modules))
"""


@pytest.mark.parametrize("command", [["books"], ["flows"], ["show", "BOOK"]])
def test_reading_commands_do_not_import_alembic(tmp_path: Path, command: list[str]) -> None:
    uri = f"sqlite:///{tmp_path / 'runs.db'}"
    with lf.open_backend(uri) as backend, backend.connect() as conn:
        conn.upgrade()
        book = conn.save_logbook(sample_book())
    args = [book.uuid if part == "BOOK" else part for part in command]
    done = subprocess.run(
        [sys.executable, "-c", PROBE, "--backend", uri, *args],
        capture_output=True,
        text=True,
        env=process_env(),
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("alembic loaded: False"), done.stdout[-300:]


def test_revisions_read_from_the_files_match_alembic() -> None:
    script = migrate._scripts()
    assert migrate.head() == script.get_current_head()
    walked = {rev.revision: rev.down_revision for rev in script.walk_revisions()}
    assert migrate.revisions() == walked
