"""Flow and task states and the transitions allowed between them.

Models are plain data and never check these; the engine and ``Storage`` call
``check_flow_transition`` / ``check_task_transition`` before recording a change.
Staying in the same state is always allowed (a resumed engine re-records states).
"""

from __future__ import annotations

from typing import Final

from ledgerflow.errors import StateTransitionError

PENDING: Final = "PENDING"
RUNNING: Final = "RUNNING"
SUCCESS: Final = "SUCCESS"
FAILURE: Final = "FAILURE"
RETRYING: Final = "RETRYING"
REVERTING: Final = "REVERTING"
REVERTED: Final = "REVERTED"
REVERT_FAILURE: Final = "REVERT_FAILURE"
SUSPENDING: Final = "SUSPENDING"
SUSPENDED: Final = "SUSPENDED"
#: A try (``td.tries``) stopped by ``lf.Interrupted``: not a failure, spends no Retry attempt.
INTERRUPTED: Final = "INTERRUPTED"
CANCELLED: Final = "CANCELLED"

FLOW_STATES: Final = frozenset(
    {PENDING, RUNNING, SUCCESS, FAILURE, REVERTING, REVERTED, SUSPENDING, SUSPENDED, CANCELLED}
)
#: Flow states a run cannot continue from (a REVERTED flow may run again from the start).
ENDED: Final = frozenset({SUCCESS, FAILURE, REVERTED, CANCELLED})
TASK_STATES: Final = frozenset(
    {PENDING, RUNNING, SUCCESS, FAILURE, RETRYING, REVERTING, REVERTED, REVERT_FAILURE}
)

#: States of one try in ``td.tries``: RUNNING while in flight, then how it ended.
TRY_STATES: Final = frozenset({RUNNING, SUCCESS, FAILURE, INTERRUPTED})

FLOW_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    PENDING: frozenset({RUNNING, SUSPENDED, REVERTING}),
    RUNNING: frozenset({SUCCESS, FAILURE, REVERTING, SUSPENDING, SUSPENDED}),
    SUSPENDING: frozenset({SUSPENDED, SUCCESS, REVERTING, REVERTED, FAILURE}),
    SUSPENDED: frozenset({RUNNING, REVERTING}),
    # A resumed REVERTED flow runs again from the start.  A resumed FAILURE flow (a
    # revert raised) first tries the failed reverts again: nothing may run forward on
    # top of effects that were never undone.
    REVERTED: frozenset({RUNNING, PENDING}),
    FAILURE: frozenset({REVERTING}),
    # -> CANCELLED: a cancel request reverted what ran (terminal).
    REVERTING: frozenset({REVERTED, FAILURE, SUSPENDING, SUSPENDED, RUNNING, CANCELLED}),
    SUCCESS: frozenset(),
    CANCELLED: frozenset(),
}

TASK_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    PENDING: frozenset({RUNNING, REVERTED}),
    # RUNNING -> PENDING: a subflow retry resets a task that was in flight.
    RUNNING: frozenset({SUCCESS, FAILURE, RETRYING, REVERTING, PENDING}),
    SUCCESS: frozenset({REVERTING, PENDING}),
    FAILURE: frozenset({REVERTING, RETRYING, RUNNING, PENDING}),
    RETRYING: frozenset({RUNNING, REVERTING, PENDING}),
    REVERTING: frozenset({REVERTED, REVERT_FAILURE}),
    REVERTED: frozenset({PENDING, RUNNING}),
    REVERT_FAILURE: frozenset({REVERTING, PENDING, RUNNING}),
}


def _check(kind: str, table: dict[str, frozenset[str]], old: str, new: str) -> None:
    if new not in table:
        raise StateTransitionError(f"unknown {kind} state {new!r}")
    if old == new:
        return
    if old not in table:
        raise StateTransitionError(f"unknown {kind} state {old!r}")
    if new not in table[old]:
        raise StateTransitionError(f"illegal {kind} transition {old} -> {new}")


def check_flow_transition(old: str, new: str) -> None:
    """Raise StateTransitionError unless a flow may move from ``old`` to ``new``."""
    _check("flow", FLOW_TRANSITIONS, old, new)


def check_task_transition(old: str, new: str) -> None:
    """Raise StateTransitionError unless a task may move from ``old`` to ``new``."""
    _check("task", TASK_TRANSITIONS, old, new)


def is_flow_transition_allowed(old: str, new: str) -> bool:
    """Tell whether a flow may move from ``old`` to ``new``."""
    try:
        check_flow_transition(old, new)
    except StateTransitionError:
        return False
    return True


def is_task_transition_allowed(old: str, new: str) -> bool:
    """Tell whether a task may move from ``old`` to ``new``."""
    try:
        check_task_transition(old, new)
    except StateTransitionError:
        return False
    return True
