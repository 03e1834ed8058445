"""States are their own names; transition tables allow and refuse what they say."""

import pytest

import ledgerflow as lf
from ledgerflow import states


def test_every_state_is_the_string_of_its_name() -> None:
    for name in states.FLOW_STATES | states.TASK_STATES:
        assert getattr(states, name) == name
    assert lf.states.SUCCESS == "SUCCESS"


def test_tables_cover_every_state() -> None:
    assert set(states.FLOW_TRANSITIONS) == states.FLOW_STATES
    assert set(states.TASK_TRANSITIONS) == states.TASK_STATES
    for targets in states.TASK_TRANSITIONS.values():
        assert targets <= states.TASK_STATES
    for targets in states.FLOW_TRANSITIONS.values():
        assert targets <= states.FLOW_STATES


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (states.PENDING, states.RUNNING),
        (states.RUNNING, states.SUCCESS),
        (states.RUNNING, states.FAILURE),
        (states.FAILURE, states.REVERTING),
        (states.REVERTING, states.REVERTED),
        (states.REVERTING, states.REVERT_FAILURE),
        (states.RUNNING, states.RUNNING),
    ],
)
def test_allowed_task_moves(old: str, new: str) -> None:
    states.check_task_transition(old, new)
    assert states.is_task_transition_allowed(old, new)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (states.PENDING, states.SUCCESS),
        (states.SUCCESS, states.RUNNING),
        (states.REVERTED, states.SUCCESS),
        (states.PENDING, "BOGUS"),
        ("BOGUS", states.RUNNING),
    ],
)
def test_illegal_task_moves_raise(old: str, new: str) -> None:
    with pytest.raises(lf.StateTransitionError) as info:
        states.check_task_transition(old, new)
    assert isinstance(info.value, lf.LedgerflowError)
    assert not states.is_task_transition_allowed(old, new)


def test_flow_moves() -> None:
    states.check_flow_transition(states.RUNNING, states.SUSPENDING)
    states.check_flow_transition(states.SUSPENDED, states.RUNNING)
    with pytest.raises(lf.StateTransitionError, match="SUCCESS -> RUNNING"):
        states.check_flow_transition(states.SUCCESS, states.RUNNING)
    with pytest.raises(lf.StateTransitionError):
        states.check_flow_transition(states.PENDING, states.RETRYING)
