"""A worker's result over the engine's channel (Dask): taken there, not carried twice."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import ledgerflow as lf
from ledgerflow.engine.context import TaskContext
from ledgerflow.engine.remote import Channel, NotStarted, run_remote


class _Store:
    """What a TaskContext reads of its storage: the task's detail."""

    def __init__(self) -> None:
        self.detail = lf.TaskDetail("produce")

    def task_detail(self, name: str) -> lf.TaskDetail:
        """The one task's detail."""
        return self.detail


@lf.task
def produce() -> dict[str, int]:
    """A result worth sending."""
    return {"rows": 3}


@lf.task
def unpicklable() -> Callable[[], int]:
    """A result pickle refuses (a lambda)."""
    return lambda: 1


@pytest.fixture
def taken() -> list[tuple[str, Any]]:
    """What the engine's end took, in order."""
    return []


def _open(taken: list[tuple[str, Any]] | None) -> Iterator[Channel]:
    def on_result(token: str, result: Any) -> bool:
        assert taken is not None
        taken.append((token, result))
        return True

    channel = Channel(lambda token: (True, 1), on_result=None if taken is None else on_result)
    try:
        yield channel
    finally:
        channel.close()


@pytest.fixture
def delivering(taken: list[tuple[str, Any]]) -> Iterator[Channel]:
    """A channel that takes results (as the engine's does for Dask)."""
    yield from _open(taken)


def test_a_result_sent_with_the_end_is_taken_and_not_returned_again(
    delivering: Channel, taken: list[tuple[str, Any]]
) -> None:
    token, remote = delivering.open(TaskContext(_Store(), "produce"))  # type: ignore[arg-type]
    assert run_remote(remote, produce, {}) is None
    assert taken == [(token, {"rows": 3})]


def test_without_a_taker_the_result_goes_back_through_the_executor() -> None:
    for channel in _open(None):
        _, remote = channel.open(TaskContext(_Store(), "produce"))  # type: ignore[arg-type]
        assert run_remote(remote, produce, {}) == {"rows": 3}


def test_a_result_that_does_not_pickle_goes_back_through_the_executor(
    delivering: Channel, taken: list[tuple[str, Any]]
) -> None:
    _, remote = delivering.open(TaskContext(_Store(), "produce"))  # type: ignore[arg-type]
    result = run_remote(remote, unpicklable, {})
    assert callable(result) and result() == 1
    assert taken == []


def test_a_try_the_engine_gave_up_on_keeps_its_result(
    delivering: Channel, taken: list[tuple[str, Any]]
) -> None:
    token, remote = delivering.open(TaskContext(_Store(), "produce"))  # type: ignore[arg-type]
    remote.begin()
    delivering.forget(token)
    assert remote.end_with({"late": True}) is False
    assert taken == []


# ---- begins the engine's thread answers itself ----------------------------------------
@pytest.fixture
def answered_later() -> Iterator[tuple[Channel, list[str], threading.Event]]:
    """A channel whose engine answers begins later (as the runner does for Dask)."""
    asked: list[str] = []
    arrived = threading.Event()

    def on_begin(token: str) -> None:
        asked.append(token)
        arrived.set()

    channel = Channel(on_begin)
    try:
        yield channel, asked, arrived
    finally:
        channel.close()


def _begin_in_thread(remote: Any) -> tuple[threading.Thread, list[Any]]:
    """Start ``remote.begin()`` in a thread; its outcome lands in the list returned."""
    outcome: list[Any] = []

    def begin() -> None:
        try:
            remote.begin()
            outcome.append(remote.attempt)
        except NotStarted as exc:
            outcome.append(exc)

    thread = threading.Thread(target=begin)
    thread.start()
    return thread, outcome


def test_a_begin_waits_for_the_engine_and_gets_its_attempt(
    answered_later: tuple[Channel, list[str], threading.Event],
) -> None:
    channel, asked, arrived = answered_later
    token, remote = channel.open(TaskContext(_Store(), "produce"))  # type: ignore[arg-type]
    thread, outcome = _begin_in_thread(remote)
    assert arrived.wait(30)
    assert asked == [token] and outcome == []  # the worker waits for the answer
    channel.answer_begin(token, True, 3)
    thread.join(30)
    assert outcome == [3]


@pytest.mark.parametrize("end", ["forget", "close"])
def test_a_begin_left_unanswered_is_told_not_to_start(
    answered_later: tuple[Channel, list[str], threading.Event], end: str
) -> None:
    channel, _, arrived = answered_later
    token, remote = channel.open(TaskContext(_Store(), "produce"))  # type: ignore[arg-type]
    thread, outcome = _begin_in_thread(remote)
    assert arrived.wait(30)
    channel.forget(token) if end == "forget" else channel.close()
    thread.join(30)
    assert len(outcome) == 1 and isinstance(outcome[0], NotStarted)
