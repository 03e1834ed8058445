"""Engine test fixtures: every test starts with the contract tests' shared state clean."""

from __future__ import annotations

import pytest

from tests.engine.contract_helpers import CALLS, CRASH_IN, Rec


@pytest.fixture(autouse=True)
def _reset_contract_state() -> None:
    CALLS.clear()
    CRASH_IN.clear()
    Rec.FAIL = set()
    Rec.BAD_REVERT = set()
