"""Where jobs meet the rest: purge keeps the books of unfinished jobs; the web view lists jobs."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

import ledgerflow as lf
from ledgerflow import states
from ledgerflow.jobs import DONE, JobBoard

FACTORY = "pkg.mod:build"


def _end_flow(board: JobBoard, flow_uuid: str) -> None:
    with board.backend.connect() as conn:
        flow_detail = conn.get_flow_details(flow_uuid)
        flow_detail.state = states.SUCCESS
        conn.update_flow_details(flow_detail)


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_purge_never_removes_a_book_an_unfinished_job_names(kind: str, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'b.db'}" if kind == "sqlite" else "memory://"
    board = lf.open_board(uri)
    finished, claimed, ready = (board.post(FACTORY) for _ in range(3))
    assert board.claim("a", 30.0) is not None and board.claim("a", 30.0) is not None
    assert board.complete(finished.uuid, "a", DONE, None)
    for job in (finished, claimed, ready):
        _end_flow(board, job.flow_uuid)
    assert lf.purge(board.backend, older_than=timedelta(0), dry_run=True) == 1
    assert lf.purge(board.backend, older_than=timedelta(0)) == 1
    with board.backend.connect() as conn:
        kept = {book.uuid for book in conn.get_logbooks()}
    assert kept == {claimed.book_uuid, ready.book_uuid}
    board.close()


def test_web_view_lists_a_real_boards_jobs(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from ledgerflow.web import create_app

    uri = f"sqlite:///{tmp_path / 'b.db'}"
    board = lf.open_board(uri)
    posted = board.post(FACTORY, name="nightly-export")
    with TestClient(create_app(uri, board=board)) as client:
        assert "nightly-export" in client.get("/jobs").text
        items = client.get("/api/jobs?state=ready").json()["items"]
        assert [item["uuid"] for item in items] == [posted.uuid]
        assert client.get("/api/jobs?state=done").json()["items"] == []
    board.close()
