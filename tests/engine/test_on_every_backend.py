"""The engine on every built-in backend: run, revert, suspend and resume."""

from __future__ import annotations

from typing import Any

import pytest

import ledgerflow as lf
from ledgerflow import states


@lf.task(provides="x")
def produce(seed: int) -> int:
    return seed * 2


@lf.task(provides="y")
def consume(x: int) -> dict[str, Any]:
    lf.current_task().checkpoint({"seen": x})
    return {"x": x}


@lf.task
def explode(y: dict[str, Any]) -> None:
    raise RuntimeError("boom")


def test_run_suspend_resume(backend: lf.Backend) -> None:
    flow = lf.LinearFlow("f", produce, consume)
    engine = lf.load(flow, backend=backend, store={"seed": 4})
    engine.on_change(lambda e: e.name == "produce" and e.state == "SUCCESS" and engine.suspend())
    assert engine.run() == {"x": 8}
    assert lf.resume(backend, engine.flow_detail.uuid, flow=flow) == {"x": 8, "y": {"x": 8}}
    with backend.connect() as conn:
        stored = conn.get_flow_details(engine.flow_detail.uuid)
    assert stored.state == states.SUCCESS
    assert [(t.name, t.state, t.attempts) for t in stored] == [
        ("produce", "SUCCESS", 1),
        ("consume", "SUCCESS", 1),
    ]
    consume_detail = stored.find_by_name("consume")
    assert consume_detail is not None and consume_detail.checkpoint == {"seen": 8}
    assert stored.meta["store"] == {"seed": 4}


def test_failure_is_stored_reverted(backend: lf.Backend) -> None:
    engine = lf.load(
        lf.LinearFlow("f", produce, consume, explode), backend=backend, store={"seed": 1}
    )
    with pytest.raises(lf.FlowFailed):
        engine.run()
    with backend.connect() as conn:
        stored = conn.get_flow_details(engine.flow_detail.uuid)
    assert stored.state == states.REVERTED
    assert {t.state for t in stored} == {states.REVERTED}
    failed = stored.find_by_name("explode")
    assert failed is not None and failed.failure is not None
    assert failed.failure.message == "boom"
