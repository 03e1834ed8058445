"""Reading commands start light: no Alembic, no SQLAlchemy, no engine on SQLite (issue 10)."""

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
loaded = {name.split(".")[0] for name in sys.modules}
print("loaded:", sorted(loaded & {"alembic", "sqlalchemy", "asyncio", "starlette"}))
print("engine loaded:", "ledgerflow.engine.engine" in sys.modules)
"""


@pytest.mark.parametrize("command", [["books"], ["flows"], ["show", "BOOK"]])
def test_reading_commands_import_neither_alembic_nor_sqlalchemy(
    tmp_path: Path, command: list[str]
) -> None:
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
    assert done.stdout.strip().endswith("loaded: []\nengine loaded: False"), done.stdout[-300:]


def test_revisions_read_from_the_files_match_alembic() -> None:
    script = migrate._scripts()
    assert migrate.head() == script.get_current_head()
    walked = {rev.revision: rev.down_revision for rev in script.walk_revisions()}
    assert migrate.revisions() == walked
