"""Typed values through the engine: encoded once per write, classes back after a crash."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import ledgerflow as lf
from ledgerflow import serialization, values

BIN = Path(sys.executable).parent


def test_a_result_is_encoded_once_for_its_success_write(monkeypatch: pytest.MonkeyPatch) -> None:
    result = {"rows": [1, 2, 3], "ids": (4, 5)}
    seen: list[Any] = []
    original = values.encode

    def counting(value: Any) -> Any:
        if value is result:
            seen.append(value)
        return original(value)

    monkeypatch.setattr(values, "encode", counting)

    @lf.task(provides="out")
    def produce() -> dict[str, Any]:
        return result

    @lf.task
    def consume(out: dict[str, Any]) -> None:
        assert out["ids"] == (4, 5)

    lf.run(lf.LinearFlow("f", produce, consume), backend="memory://")
    assert len(seen) == 1


def test_a_checkpoint_is_encoded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    mark = {"offset": (1, 2)}
    seen: list[Any] = []
    original = values.encode
    monkeypatch.setattr(
        values, "encode", lambda v: (seen.append(v) if v is mark else None) or original(v)
    )

    @lf.task
    def long() -> None:
        lf.current_task().checkpoint(mark)

    lf.run(lf.LinearFlow("f", long), backend="memory://")
    assert len(seen) == 1


class _CountingEncoder:
    """Wraps serialization's JSON encoder: counts the texts that hold ``mark``."""

    def __init__(self, inner: Any, mark: str) -> None:
        self.inner, self.mark, self.texts = inner, mark, 0

    def encode(self, value: Any) -> str:
        text: str = self.inner.encode(value)
        self.texts += self.mark in text
        return text


@pytest.mark.parametrize("typed", [False, True], ids=["plain-json", "typed"])
def test_every_write_of_a_task_reuses_the_one_encoding_of_its_result_and_checkpoint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, typed: bool
) -> None:
    # The task detail is written at RUNNING, at its checkpoint, at SUCCESS, at REVERTING
    # and REVERTED: its result and checkpoint are turned into JSON text once each.
    result: dict[str, Any] = {"result-mark": (1, 2) if typed else [1, 2]}
    saved: dict[str, Any] = {"checkpoint-mark": {3} if typed else [3]}
    results = _CountingEncoder(serialization._encoder, "result-mark")
    monkeypatch.setattr(serialization, "_encoder", results)
    checkpoints = _CountingEncoder(results, "checkpoint-mark")
    monkeypatch.setattr(serialization, "_encoder", checkpoints)

    @lf.task(provides="out")
    def produce() -> dict[str, Any]:
        lf.current_task().checkpoint(saved)
        return result

    @lf.task
    def fail(out: dict[str, Any]) -> None:
        raise RuntimeError("revert produce")

    with pytest.raises(lf.FlowFailed):
        lf.run(lf.LinearFlow("f", produce, fail), backend=f"sqlite:///{tmp_path / 'e.db'}")
    assert (results.texts, checkpoints.texts) == (1, 1)


@pytest.mark.parametrize("scheme", ["memory", "sqlite", "files"])
def test_the_store_given_to_load_is_encoded_once_for_the_new_flows_write(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, scheme: str
) -> None:
    # lf.load checks the store can be stored before writing anything; the write of the
    # new flow detail reuses that text instead of encoding the store a second time.
    uri = {
        "memory": "memory://",
        "sqlite": f"sqlite:///{tmp_path / 's.db'}",
        "files": f"file://{tmp_path / 'store'}",
    }[scheme]
    texts = _CountingEncoder(serialization._encoder, "store-mark")
    monkeypatch.setattr(serialization, "_encoder", texts)
    backend = lf.open_backend(uri)
    try:
        engine = lf.load(lf.LinearFlow("f", _noop), store={"store-mark": (1, 2)}, backend=backend)
        assert texts.texts == 1
        # Only the first write reuses it: meta edited in place afterwards is stored.
        engine.flow_detail.meta["note"] = "edited"
        engine.run()
        conn = backend.connect()
        try:
            stored = conn.get_flow_details(engine.flow_detail.uuid).meta
        finally:
            conn.close()
    finally:
        backend.close()
    assert stored["note"] == "edited" and stored["store"] == {"store-mark": (1, 2)}


def test_a_store_that_cannot_be_stored_is_named_and_nothing_is_written() -> None:
    backend = lf.open_backend("memory://")
    try:
        with pytest.raises(lf.SerializationError, match=r"store cannot be stored.*object"):
            lf.load(lf.LinearFlow("f", _noop), store={"bad": object()}, backend=backend)
        conn = backend.connect()
        try:
            assert conn.get_logbooks() == []
        finally:
            conn.close()
    finally:
        backend.close()


@lf.task
def _noop() -> None:
    """Does nothing."""


JOBS = """
import dataclasses, enum, os
from datetime import date
from decimal import Decimal
import ledgerflow as lf

class Tier(enum.Enum):
    GOLD = "gold"

@dataclasses.dataclass(frozen=True)
class Quote:
    amount: Decimal
    tier: Tier
    valid_until: date

@lf.task(provides="quote")
def make_quote() -> Quote:
    return Quote(Decimal("19.90"), Tier.GOLD, date(2026, 12, 31))

@lf.task(provides="summary")
def summarize(quote: Quote) -> str:
    if os.environ.get("CRASH"):
        os.kill(os.getpid(), 9)
    assert isinstance(quote, Quote) and quote.tier is Tier.GOLD, repr(quote)
    return f"{quote.amount} {quote.tier.value} until {quote.valid_until.isoformat()}"

def build() -> lf.Flow:
    return lf.LinearFlow("quote", make_quote, summarize)
"""


@pytest.mark.slow
def test_a_new_process_resumes_with_dataclasses_and_enums_of_the_factory(tmp_path: Path) -> None:
    (tmp_path / "quote_jobs.py").write_text(textwrap.dedent(JOBS))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LEDGERFLOW_BACKEND")}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", NO_COLOR="1")
    start = (
        "import ledgerflow as lf, quote_jobs\n"
        "engine = lf.load(quote_jobs.build, backend='sqlite:///q.db')\n"
        "print(engine.flow_detail.uuid, flush=True); engine.run()"
    )
    crashed = subprocess.run(
        [sys.executable, "-c", start],
        cwd=tmp_path,
        env={**env, "CRASH": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert crashed.returncode == -9, crashed.stderr
    flow_uuid = crashed.stdout.split()[0]
    resumed = subprocess.run(
        ["ledgerflow", "--backend", "sqlite:///q.db", "resume", flow_uuid],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert 'summary = "19.90 gold until 2026-12-31"' in resumed.stdout
