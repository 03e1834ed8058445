"""Lifecycle records on the ``ledgerflow`` logger (API.md "Seeing into runs")."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

import ledgerflow as lf
from ledgerflow.engine import observe as lf_observe
from tests.cli.conftest import Runner, cli_process

__all__ = ["cli_process"]

calls: dict[str, int] = {}


@lf.task(provides="value", retry=lf.Retry(attempts=2, backoff=0.0))
def flaky() -> int:
    calls["flaky"] = calls.get("flaky", 0) + 1
    if calls["flaky"] == 1:
        raise RuntimeError("first try fails")
    return 1


@lf.task
def boom(value: int) -> None:
    raise ValueError("no good")


def _records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "ledgerflow"]


def test_info_records_for_every_lifecycle_step(caplog: pytest.LogCaptureFixture) -> None:
    calls.clear()
    with caplog.at_level(logging.INFO, logger="ledgerflow"):
        engine = lf.load(lf.LinearFlow("logged", flaky, boom))
        with pytest.raises(lf.FlowFailed):
            engine.run()
    records = _records(caplog)
    flow_uuid = engine.flow_detail.uuid
    assert all(r.levelno == logging.INFO for r in records)
    assert all(r.flow_uuid == flow_uuid for r in records)  # type: ignore[attr-defined]
    steps = [(r.task, r.attempt, r.getMessage().split(" (")[0]) for r in records]  # type: ignore[attr-defined]
    assert steps == [
        (None, None, "flow logged started"),
        ("flaky", 1, "task flaky started"),
        ("flaky", 1, "task flaky failed, will retry"),
        ("flaky", 2, "task flaky started"),
        ("flaky", 2, "task flaky succeeded"),
        ("boom", 1, "task boom started"),
        ("boom", 1, "task boom failed"),
        (None, None, "flow logged REVERTING"),
        ("boom", 1, "task boom reverted"),
        ("flaky", 2, "task flaky reverted"),
        (None, None, "flow logged REVERTED"),
    ]
    assert "no good" in records[6].getMessage()


def test_nothing_is_logged_below_info(caplog: pytest.LogCaptureFixture) -> None:
    calls.clear()
    with caplog.at_level(logging.WARNING, logger="ledgerflow"):
        lf.run(lf.LinearFlow("quiet", flaky))
    assert _records(caplog) == []


def test_cli_log_level_info_prints_lifecycle_records(cli_process: Runner, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'demo.db'}"
    outcome = cli_process("--backend", uri, "--log-level", "info", "demo")
    assert outcome.exit_code == 0, outcome.stderr
    assert " INFO ledgerflow: flow " in outcome.stderr
    assert "started (attempt 1)" in outcome.stderr
    quiet = cli_process("--backend", uri, "books")
    assert "INFO" not in quiet.stderr


def _made(message: str, args: tuple[object, ...]) -> dict[str, object]:
    where = lf_observe.__file__
    made = lf_observe.LOG.makeRecord("ledgerflow", logging.INFO, where, 0, message, args, None)
    return dict(made.__dict__)


def test_a_record_from_the_template_has_every_field_makerecord_gives() -> None:
    args = ("t1", 1)
    ours = lf_observe._record("task %s started (attempt %d)", args).__dict__
    theirs = _made("task %s started (attempt %d)", args)
    clock = {"created", "msecs", "relativeCreated"}
    assert set(ours) == set(theirs)
    assert {k: v for k, v in ours.items() if k not in clock} == {
        k: v for k, v in theirs.items() if k not in clock
    }
    assert abs(ours["created"] - theirs["created"]) < 60  # type: ignore[operator]
    assert 0 <= ours["msecs"] < 1000  # type: ignore[operator]


def test_a_custom_record_factory_still_makes_the_records(caplog: pytest.LogCaptureFixture) -> None:
    calls.clear()
    standard = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = standard(*args, **kwargs)
        record.tenant = "acme"
        return record

    logging.setLogRecordFactory(factory)
    try:
        with caplog.at_level(logging.INFO, logger="ledgerflow"):
            lf.run(lf.LinearFlow("custom", flaky))
    finally:
        logging.setLogRecordFactory(standard)
    records = _records(caplog)
    assert records and all(r.tenant == "acme" for r in records)  # type: ignore[attr-defined]


def test_records_name_the_thread_that_wrote_them(caplog: pytest.LogCaptureFixture) -> None:
    calls.clear()
    with caplog.at_level(logging.INFO, logger="ledgerflow"):
        thread = threading.Thread(target=lf.run, args=(lf.LinearFlow("t", flaky),), name="runner-7")
        thread.start()
        thread.join()
    records = _records(caplog)
    assert records and {r.threadName for r in records} == {"runner-7"}
    assert {r.thread for r in records} == {thread.ident}
