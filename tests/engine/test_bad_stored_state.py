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
