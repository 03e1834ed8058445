"""A stored state this version does not know is named with its record when a run meets it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import ledgerflow as lf
from ledgerflow.persistence.sql.tables import FLOWS, TASKS


@pytest.mark.parametrize("kind", ["task", "flow"])
def test_resume_names_the_record_whose_state_is_unknown(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "runs.db"
    uri = f"sqlite:///{path}"
    flow = lf.load("tests.engine.flows_for_crash:chain", backend=uri).flow_detail
    task = flow.find_by_name("step1")
    assert task is not None
    table, uuid, name = (
        (TASKS, task.uuid, "step1") if kind == "task" else (FLOWS, flow.uuid, "chain")
    )
    with sqlite3.connect(path) as raw:
        raw.execute(f"UPDATE {table.name} SET state = 'BOGUS' WHERE uuid = ?", (uuid,))
    with pytest.raises(lf.StateTransitionError) as caught:
        lf.resume(uri, flow.uuid)
    message = str(caught.value)
    assert uuid in message and repr(name) in message and "'BOGUS'" in message


def test_resume_on_a_malformed_sqlite_file_stops_before_anything_runs(tmp_path: Path) -> None:
    from tests.persistence.test_check import _zero_a_page_of

    path, log = tmp_path / "runs.db", tmp_path / "exec.log"
    uri = f"sqlite:///{path}"
    flows = [
        lf.load("tests.engine.flows_for_crash:chain", backend=uri).flow_detail.uuid
        for _ in range(40)
    ]
    _zero_a_page_of(path, TASKS.name)
    hit = None
    for uuid in flows:  # the flows whose tasks sat on the zeroed page
        with lf.open_backend(uri) as backend, backend.connect() as conn:
            try:
                conn.get_flow_details(uuid)
            except lf.CorruptStoreError:
                hit = uuid
                break
    assert hit is not None
    before = path.read_bytes()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEDGERFLOW_TEST_LOG", str(log))
        with pytest.raises(lf.CorruptStoreError) as caught:
            lf.resume(uri, hit)
    assert str(path) in str(caught.value) and "ledgerflow check" in str(caught.value)
    assert not log.exists()  # no task ran
    assert path.read_bytes() == before  # and nothing was written
