"""A conductor reads a job's flow once, yet its values decode to the factory's own types.

The read that names the factory comes before the factory's first import in the
conductor; that first job reads its flow again after the import, later ones resume
from the one read.  A fresh conductor process, so the factory's module is not imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import ledgerflow as lf
from ledgerflow.jobs import DONE
from tests.jobs.typed_flows import Color

ROOT = Path(__file__).resolve().parents[2]


def test_every_job_sees_its_values_as_their_types(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'board.db'}"
    board = lf.open_board(uri)
    jobs = [board.post("tests.jobs.typed_flows:painting", store={"color": Color.RED}) for _ in "ab"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]))
    command = [sys.executable, "-m", "ledgerflow", "--backend", uri, "conductor"]
    subprocess.run(
        [*command, "--workers", "1", "--poll", "0.1", "--until-idle"],
        cwd=ROOT, env=env, check=True, timeout=120, capture_output=True,
    )  # fmt: skip
    with board.backend.connect() as conn:
        for job in jobs:
            assert board.get(job.uuid).state == DONE
            assert [td.result for td in conn.get_flow_details(job.flow_uuid)] == ["Color"]
    board.close()
