"""Shared pieces of the API contract tests (flows, tasks and their call log)."""

from __future__ import annotations

from typing import Any

import pytest

import ledgerflow as lf

CALLS: list[str] = []


class Boom(Exception):
    """The failure the tests inject."""


def make_pair() -> lf.Flow:
    """A factory importable as ``tests.engine.contract_helpers:make_pair``."""

    @lf.task(provides="x")
    def first() -> int:
        CALLS.append("first")
        return 1

    @lf.task(provides="y")
    def second(x: int, k: int) -> int:
        CALLS.append("second")
        return x + k

    return lf.LinearFlow("pair", first, second)


def stored_flow(backend: lf.Backend, flow_uuid: str) -> lf.FlowDetail:
    with backend.connect() as conn:
        return conn.get_flow_details(flow_uuid)


class Rec(lf.Task):
    """Records execute/revert; fails if its name is in FAIL, revert raises if in BAD_REVERT."""

    FAIL: set[str] = set()
    BAD_REVERT: set[str] = set()

    def execute(self, **inputs: Any) -> str:
        CALLS.append(f"run {self.name}")
        if self.name in Rec.FAIL:
            raise Boom(f"{self.name} broke")
        return self.name

    def revert(self, *, result: Any, flow_failures: Any, **inputs: Any) -> None:
        CALLS.append(f"revert {self.name}")
        if self.name in Rec.BAD_REVERT:
            raise RuntimeError(f"cannot undo {self.name}")


def four() -> lf.Flow:
    """a -> b -> c -> d, each providing its own name."""
    return lf.LinearFlow("four", *(Rec(name=n, provides=n) for n in "abcd"))


class Crash(BaseException):
    """Stands in for the process dying: no engine catches it."""


CRASH_IN: set[str] = set()


class Step(lf.Task):
    """Appends its name to the upstream value; crashes (BaseException) when told to."""

    def execute(self, prev: str = "") -> str:
        CALLS.append(f"run {self.name}")
        if f"run {self.name}" in CRASH_IN:
            raise Crash(self.name)
        if self.name in Rec.FAIL:
            raise Boom(self.name)
        return prev + self.name

    def revert(self, *, result: Any, flow_failures: Any, **inputs: Any) -> None:
        CALLS.append(f"revert {self.name}")
        if f"revert {self.name}" in CRASH_IN:
            raise Crash(self.name)


def chain(version: str = "1.0") -> lf.Flow:
    """a -> b -> c, each adding its name to the previous result."""
    return lf.LinearFlow(
        "chain",
        Step(name="a", provides="a", version=version),
        Step(name="b", provides="b", rebind={"prev": "a"}, version=version),
        Step(name="c", provides="c", rebind={"prev": "b"}, version=version),
    )


def crashed_run(uri: str, where: str, save: str = "always") -> str:
    """Run chain() until ``where`` crashes it; return the flow uuid."""
    CRASH_IN.add(where)
    backend = lf.open_backend(uri)
    try:
        engine = lf.load(chain(), backend=backend, save=save)
        with pytest.raises(Crash):
            engine.run()
        return engine.flow_detail.uuid
    finally:
        CRASH_IN.clear()
        CALLS.clear()
        backend.close()
