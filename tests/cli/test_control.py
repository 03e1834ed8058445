"""``ledgerflow suspend|cancel`` and what ``show`` tells about a flow's owner."""

from __future__ import annotations

import json
from pathlib import Path

import ledgerflow as lf
from ledgerflow import states
from ledgerflow.engine import identity
from ledgerflow.persistence.ownership import OwnChange
from tests.cli.conftest import Runner, assert_one_line_error

ROOT = str(Path(__file__).resolve().parents[2])
CHAIN = "tests.engine.flows_for_crash:chain"


def _suspended(uri: str) -> str:
    engine = lf.load(CHAIN, backend=uri)
    engine.suspend()
    engine.run()
    flow_uuid: str = engine.flow_detail.uuid
    return flow_uuid


def _hold(uri: str, flow_uuid: str, owner: str, state: str | None = None) -> None:
    with lf.open_backend(uri) as backend, backend.connect() as conn:
        fence = conn.get_ownership(flow_uuid).fence
        assert conn.change_ownership(flow_uuid, OwnChange("take", fence, owner, 3600))
        if state is not None:
            detail = conn.get_flow_details(flow_uuid, lazy=True)
            detail.state = state
            conn.update_flow_details(detail)


def test_cancel_of_an_unowned_flow_reverts_it(any_cli: Runner, sqlite_uri: str) -> None:
    flow_uuid = _suspended(sqlite_uri)
    outcome = any_cli("--backend", sqlite_uri, "cancel", flow_uuid, env={"PYTHONPATH": ROOT})
    assert outcome.exit_code == 0, outcome.stderr
    assert f"flow {flow_uuid} is CANCELLED" in outcome.stdout
    again = any_cli("--backend", sqlite_uri, "cancel", flow_uuid, env={"PYTHONPATH": ROOT})
    assert again.exit_code == 0 and "CANCELLED" in again.stdout


def test_suspend_and_cancel_of_a_finished_or_unknown_flow_say_so(
    any_cli: Runner, sqlite_uri: str
) -> None:
    engine = lf.load(CHAIN, backend=sqlite_uri)
    engine.run()
    flow_uuid = engine.flow_detail.uuid
    for command in ("suspend", "cancel"):
        outcome = any_cli("--backend", sqlite_uri, command, flow_uuid)
        assert_one_line_error(outcome, 1, "already ended SUCCESS")
        missing = any_cli("--backend", sqlite_uri, command, "no-such-flow")
        assert_one_line_error(missing, 1, "no-such-flow")


def test_suspend_of_an_owned_flow_stores_the_request(any_cli: Runner, sqlite_uri: str) -> None:
    flow_uuid = _suspended(sqlite_uri)
    _hold(sqlite_uri, flow_uuid, "elsewhere/boot/ns:1:1", states.RUNNING)
    outcome = any_cli("--backend", sqlite_uri, "suspend", flow_uuid)
    assert outcome.exit_code == 0, outcome.stderr
    assert "asked the owner" in outcome.stdout
    with lf.open_backend(sqlite_uri) as backend, backend.connect() as conn:
        assert conn.get_ownership(flow_uuid).request == "suspend"


def test_show_tells_the_owner_and_marks_a_running_flow_whose_owner_is_gone(
    any_cli: Runner, sqlite_uri: str
) -> None:
    flow_uuid = _suspended(sqlite_uri)
    _hold(sqlite_uri, flow_uuid, "elsewhere/boot/ns:1:1", states.RUNNING)
    shown = any_cli("--backend", sqlite_uri, "show", flow_uuid)
    assert "owner elsewhere/boot/ns:1:1 lease until" in shown.stdout
    assert "fence 2" in shown.stdout
    assert "owner gone" not in shown.stdout  # another host, lease running: alive for all we know
    dead = identity.this_process().rsplit(":", 2)[0] + ":999999999:1"
    flow_uuid = _suspended(sqlite_uri)
    _hold(sqlite_uri, flow_uuid, dead, states.RUNNING)
    shown = any_cli("--backend", sqlite_uri, "show", flow_uuid)
    assert "owner gone" in shown.stdout
    data = json.loads(any_cli("--backend", sqlite_uri, "show", flow_uuid, "--json").stdout)
    assert data["owner"] == dead and data["fence"] == 2 and data["lease_expires_at"]
