"""A store with a few runs (one failed after a retry) for the web view's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import ledgerflow as lf

pytest.importorskip("starlette")
from starlette.testclient import TestClient

from ledgerflow.web import create_app

HOSTILE = "<script>alert(1)</script>\x1b[31m"
tries: dict[str, int] = {}


@lf.task(provides="rows", retry=lf.Retry(attempts=2, backoff=0.0))
def extract() -> int:
    tries["extract"] = tries.get("extract", 0) + 1
    if tries["extract"] == 1:
        raise ConnectionError("source went away")
    return 10


@lf.task
def load_rows(rows: int) -> None:
    raise RuntimeError("disk full " + "x" * 5000)


@lf.task(provides="ok")
def fine() -> str:
    return HOSTILE


def make_store(uri: str) -> dict[str, str]:
    """Two books: one SUCCESS, one REVERTED (its load_rows failed); uuids by role."""
    tries.clear()
    good = lf.load(lf.LinearFlow(HOSTILE, fine), backend=uri, book="good-book")
    good.run()
    bad = lf.load(lf.LinearFlow("nightly", extract, load_rows), backend=uri, book="nightly-run")
    with pytest.raises(lf.FlowFailed):
        bad.run()
    failed = next(t for t in bad.flow_detail if t.name == "load_rows")
    return {
        "good_book": good.book.uuid,
        "bad_book": bad.book.uuid,
        "bad_flow": bad.flow_detail.uuid,
        "failed_task": failed.uuid,
        "extract": next(t for t in bad.flow_detail if t.name == "extract").uuid,
        "good_flow": good.flow_detail.uuid,
    }


@pytest.fixture
def store_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'runs.db'}"


@pytest.fixture
def uuids(store_uri: str) -> dict[str, str]:
    return make_store(store_uri)


@pytest.fixture
def client(store_uri: str, uuids: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(store_uri)) as test_client:
        yield test_client
