"""A clock that jumps cannot break ownership (issue 8, "bad input and faults").

The wall clock ledgerflow reads (``models.utcnow`` wherever a module holds it) is moved
by a day, forward or back, in this process only: the system clock is shared.  On
PostgreSQL and MariaDB the server's clock decides a lease, so a client whose clock is
far off neither shortens another's lease nor writes a lease off by its own error.
Everywhere, the heartbeat is scheduled on the monotonic clock: renewals go on through
a jump, and each renewal restates the lease in the clock takers read.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

import ledgerflow as lf
from ledgerflow import models
from ledgerflow.persistence.ownership import OwnChange
from tests.engine import flows_for_crash
from tests.engine.test_crash import CHAIN_TOTAL

OTHER_HOST = "elsewhere/boot/ns:1:1"
DAY = timedelta(days=1)
SERVERS = ("postgresql", "mysql")
#: Slack allowed between a lease's length and what the server stored (a slow machine).
SLACK = 5.0


class Clock:
    """This process's wall clock as ledgerflow reads it, shifted by ``offset``."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    """Every ledgerflow module's ``utcnow`` reads the shifted clock."""
    shifted = Clock()
    original = models.utcnow
    for name, module in list(sys.modules.items()):
        if name.startswith("ledgerflow") and getattr(module, "utcnow", None) is original:
            monkeypatch.setattr(module, "utcnow", shifted.now)
    yield shifted


def _suspended_flow(backend: lf.Backend) -> str:
    engine = lf.load("tests.engine.flows_for_crash:chain", backend=backend)
    engine.suspend()
    engine.run()
    return engine.flow_detail.uuid


def _hold(backend: lf.Backend, flow_uuid: str, owner: str, lease: float) -> None:
    with backend.connect() as conn:
        fence = conn.get_ownership(flow_uuid).fence
        assert conn.change_ownership(flow_uuid, OwnChange("take", fence, owner, lease))


@pytest.mark.parametrize("backend_kind", SERVERS, indirect=True)
@pytest.mark.parametrize("jump", [DAY, -DAY], ids=["ahead", "behind"])
def test_on_a_server_a_client_clock_far_off_neither_takes_nor_misstates_a_lease(
    backend: lf.Backend, clock: Clock, jump: timedelta
) -> None:
    flow_uuid = _suspended_flow(backend)
    _hold(backend, flow_uuid, OTHER_HOST, lease=30.0)
    clock.offset = jump
    with backend.connect() as conn:
        seen = conn.get_ownership(flow_uuid)
        assert not seen.expired  # judged by the server's now, not ours
        assert abs((seen.lease_expires_at - seen.now).total_seconds() - 30.0) < SLACK
        assert not conn.change_ownership(flow_uuid, OwnChange("take", seen.fence, "me:1:1", 30))
    with pytest.raises(lf.FlowBusy):
        lf.resume(backend, flow_uuid)
    # A lease that did run out (by the server's clock) is free, whatever our clock says
    # (behind: a lease judged by our clock would look a day longer).
    _release(backend, flow_uuid)
    _hold(backend, flow_uuid, OTHER_HOST, lease=0.3)
    result = lf.resume(backend, flow_uuid, wait=30)
    assert result[f"total{flows_for_crash.CHAIN_LENGTH}"] == CHAIN_TOTAL
    # A take under our clock writes the server's now + the lease, not ours.
    with backend.connect() as conn:
        fence = conn.get_ownership(flow_uuid).fence
        assert conn.change_ownership(flow_uuid, OwnChange("take", fence, "me:1:1", 15.0))
        taken = conn.get_ownership(flow_uuid)
    assert taken.lease_expires_at is not None
    assert abs((taken.lease_expires_at - taken.now).total_seconds() - 15.0) < SLACK
    assert abs((taken.now - datetime.now(UTC)).total_seconds()) < SLACK


def _release(backend: lf.Backend, flow_uuid: str) -> None:
    with backend.connect() as conn:
        fence = conn.get_ownership(flow_uuid).fence
        assert conn.change_ownership(flow_uuid, OwnChange("release", fence))


@pytest.mark.parametrize("jump", [DAY, -DAY], ids=["ahead", "behind"])
def test_the_heartbeat_renews_through_a_wall_clock_jump(
    backend_kind: str, backend: lf.Backend, clock: Clock, jump: timedelta
) -> None:
    lease = 0.6
    renewals: list[datetime] = []
    refused: list[bool] = []
    engine: lf.Engine

    @lf.task
    def jumps_the_clock() -> None:
        flow_uuid = engine.flow_detail.uuid
        with backend.connect() as conn:
            before = conn.get_ownership(flow_uuid).lease_expires_at
            clock.offset = jump
            # Wait on the store (not on a sleep) for two renewals after the jump.
            deadline = time.monotonic() + 30
            while len(renewals) < 2 and time.monotonic() < deadline:
                seen = conn.get_ownership(flow_uuid)
                if seen.lease_expires_at not in (before, *renewals):
                    renewals.append(seen.lease_expires_at)  # type: ignore[arg-type]
                threading.Event().wait(0.02)
            seen = conn.get_ownership(flow_uuid)
            take = OwnChange("take", seen.fence, OTHER_HOST, 30.0)
            refused.append(not conn.change_ownership(flow_uuid, take))

    engine = lf.load(lf.LinearFlow("jumped", jumps_the_clock), backend=backend, lease=lease)
    engine.run()
    assert len(renewals) == 2, "the heartbeat stopped renewing after the clock jumped"
    assert refused == [True]  # a live owner's lease stays its own
    if backend_kind not in SERVERS:
        # Each renewal restates the lease in the (jumped) clock every taker here reads.
        for renewed in renewals:
            assert abs((renewed - clock.now()).total_seconds()) < lease + SLACK
