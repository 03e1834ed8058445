"""Claims are timed on the server's clock: a conductor host whose clock is off cannot
shorten (or stretch) a claim.

This process plays the skewed host: its clocks (``time.time`` and ledgerflow's
``utcnow``) are set an hour back or ahead while it claims and renews; another view of
the board then finds the claim exactly as long as asked.  Only boards with a server
are concerned: memory and SQLite boards live on one host, with one clock.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

import ledgerflow.jobs.board
import ledgerflow.jobs.sql
import ledgerflow.models
from ledgerflow.jobs import JobBoard
from tests.jobs.conftest import _clear, board_uris

FACTORY = "pkg.mod:build"
HOUR = 3600.0


@pytest.fixture(params=["postgresql", "mysql", "redis"])
def server_board(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobBoard]:
    """An empty board of each kind that has a server."""
    from ledgerflow.jobs import open_board

    uri, backend = board_uris(request.param, request, tmp_path)
    board = open_board(uri, backend=backend)
    _clear(board)
    yield board
    _clear(board)
    board.close()


class _Skew:
    """This host's clocks, ``seconds`` off while set."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.real_time = time.time
        self.real_utcnow = ledgerflow.models.utcnow

    def set(self, seconds: float) -> None:
        def skewed_utcnow() -> datetime:
            return self.real_utcnow() + timedelta(seconds=seconds)

        self.monkeypatch.setattr(time, "time", lambda: self.real_time() + seconds)
        for module in (ledgerflow.models, ledgerflow.jobs.board, ledgerflow.jobs.sql):
            self.monkeypatch.setattr(module, "utcnow", skewed_utcnow)

    def clear(self) -> None:
        self.monkeypatch.undo()


@pytest.fixture
def skew(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Skew]:
    """Set this host's clocks off, and back."""
    clocks = _Skew(monkeypatch)
    yield clocks
    clocks.clear()


def test_a_claim_from_a_host_an_hour_behind_is_not_short(
    server_board: JobBoard, skew: _Skew
) -> None:
    job = server_board.post(FACTORY)
    skew.set(-HOUR)
    claimed = server_board.claim("behind", 60.0)
    assert claimed is not None and claimed.uuid == job.uuid
    skew.clear()
    # On the client's clock the claim would have lapsed 59 minutes ago.
    assert server_board.claim("other", 60.0) is None
    assert server_board.idle().lapsed == 0
    assert server_board.fail_lapsed() == 0


def test_a_renewal_from_a_host_an_hour_behind_is_not_short(
    server_board: JobBoard, skew: _Skew
) -> None:
    job = server_board.post(FACTORY)
    assert server_board.claim("behind", 0.0) is not None  # lapsed at once
    skew.set(-HOUR)
    assert server_board.renew(job.uuid, "behind", 60.0)
    skew.clear()
    assert server_board.claim("other", 60.0) is None
    assert server_board.idle().lapsed == 0


def test_a_claim_from_a_host_an_hour_ahead_lapses_on_time(
    server_board: JobBoard, skew: _Skew
) -> None:
    job = server_board.post(FACTORY)
    skew.set(HOUR)
    assert server_board.claim("ahead", 0.0) is not None
    skew.clear()
    # On the client's clock the claim would hold for another hour.
    assert server_board.idle().lapsed == 1
    taken = server_board.claim("other", 60.0)
    assert taken is not None and taken.uuid == job.uuid
