"""The job-board contract as a pytest suite, for every board (see ``ledgerflow.testing``).

Subclass ``BoardConformance`` and provide a ``board`` fixture that yields an empty
board.  Factories here are plain text: a board never imports them.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta

import pytest

from ledgerflow import states
from ledgerflow.errors import NotFound, SerializationError
from ledgerflow.jobs import CANCELLED, CLAIMED, DONE, FAILED, READY, Job, JobBoard

__all__ = ["BoardConformance"]

FACTORY = "ledgerflow_tests.never_imported:build"


def _claim_all(board: JobBoard, owner: str = "me") -> list[Job]:
    claimed = []
    while (job := board.claim(owner, 30.0)) is not None:
        claimed.append(job)
    return claimed


def _failed_job(board: JobBoard, key: str | None = None) -> Job:
    """A job that ran out of attempts (FAILED, its flow REVERTED), as a conductor leaves it."""
    job = board.post(FACTORY, max_attempts=1, key=key)
    board.claim("a", 30.0)
    board.complete(job.uuid, "a", FAILED, "boom")
    with board.backend.connect() as conn:
        flow_detail = conn.get_flow_details(job.flow_uuid)
        flow_detail.state = states.REVERTED
        conn.update_flow_details(flow_detail)
    return job


class BoardConformance:
    """Every promise of API.md's "Jobs, boards and conductors" a board itself keeps."""

    def test_post_creates_book_flow_and_job(self, board: JobBoard) -> None:
        job = board.post(FACTORY, store={"n": 1}, priority=2)
        assert (job.state, job.attempts, job.max_attempts, job.owner) == (READY, 0, 3, None)
        assert job.name == FACTORY and job.priority == 2 and job.last_error is None
        with board.backend.connect() as conn:
            flow_detail = conn.get_flow_details(job.flow_uuid)
            book = conn.get_logbook(job.book_uuid)
        assert flow_detail.meta["factory"] == FACTORY
        assert flow_detail.meta["store"] == {"n": 1}
        assert [fd.uuid for fd in book] == [job.flow_uuid]
        assert board.get(job.uuid) == job

    def test_to_dict_is_json_safe_with_attribute_names(self, board: JobBoard) -> None:
        import json

        job = board.post(FACTORY, name="nightly", key="k1")
        data = json.loads(json.dumps(job.to_dict()))
        assert data["name"] == "nightly" and data["key"] == "k1"
        assert set(data) == {
            "uuid", "name", "state", "book_uuid", "flow_uuid", "priority", "key",
            "attempts", "max_attempts", "owner", "created_at", "available_at", "last_error",
        }  # fmt: skip
        assert data["created_at"] == job.created_at.isoformat()

    def test_get_unknown_is_not_found(self, board: JobBoard) -> None:
        with pytest.raises(NotFound):
            board.get("no-such-job")

    def test_jobs_newest_first_with_state_and_limit(self, board: JobBoard) -> None:
        posted = [board.post(FACTORY, name=f"j{i}") for i in range(4)]
        assert [j.uuid for j in board.jobs()] == [j.uuid for j in reversed(posted)]
        assert [j.uuid for j in board.jobs(limit=2)] == [posted[3].uuid, posted[2].uuid]
        board.claim("me", 30.0)
        assert [j.uuid for j in board.jobs(state=CLAIMED)] == [posted[0].uuid]
        assert len(board.jobs(state=READY)) == 3
        with pytest.raises(ValueError, match="state"):
            board.jobs(state="NOPE")

    def test_key_deduplicates_while_ready_or_claimed(self, board: JobBoard) -> None:
        first = board.post(FACTORY, key="nightly")
        assert board.post(FACTORY, key="nightly").uuid == first.uuid
        claimed = board.claim("me", 30.0)
        assert claimed is not None and claimed.uuid == first.uuid
        assert board.post(FACTORY, key="nightly").uuid == first.uuid
        assert board.complete(first.uuid, "me", DONE, None)
        again = board.post(FACTORY, key="nightly")
        assert again.uuid != first.uuid and again.state == READY
        assert len(board.jobs()) == 2

    def test_priority_then_posting_order(self, board: JobBoard) -> None:
        low = board.post(FACTORY, name="low", priority=-5)
        a = board.post(FACTORY, name="a")
        high = board.post(FACTORY, name="high", priority=10**6)
        b = board.post(FACTORY, name="b")
        order = [job.uuid for job in _claim_all(board)]
        assert order == [high.uuid, a.uuid, b.uuid, low.uuid]

    def test_delay_holds_a_job_back(self, board: JobBoard) -> None:
        later = board.post(FACTORY, delay=0.5)
        now = board.post(FACTORY)
        assert later.available_at - later.created_at >= timedelta(seconds=0.5)
        first = board.claim("me", 30.0)
        assert first is not None and first.uuid == now.uuid
        assert board.claim("me", 30.0) is None
        deadline = time.monotonic() + 10
        while (job := board.claim("me", 30.0)) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert job is not None and job.uuid == later.uuid

    def test_claim_counts_attempts_and_sets_owner(self, board: JobBoard) -> None:
        posted = board.post(FACTORY)
        job = board.claim("conductor-1", 30.0)
        assert job is not None and job.uuid == posted.uuid
        assert (job.state, job.owner, job.attempts) == (CLAIMED, "conductor-1", 1)
        assert board.get(job.uuid).state == CLAIMED

    def test_only_the_owner_changes_a_claim(self, board: JobBoard) -> None:
        job = board.post(FACTORY)
        assert board.claim("a", 30.0) is not None
        assert not board.complete(job.uuid, "b", DONE, None)
        assert not board.renew(job.uuid, "b", 30.0)
        assert not board.hand_back(job.uuid, "b", delay=0, refund=True)
        assert board.renew(job.uuid, "a", 30.0)
        assert board.complete(job.uuid, "a", FAILED, "boom")
        stored = board.get(job.uuid)
        assert (stored.state, stored.last_error, stored.owner) == (FAILED, "boom", None)
        assert not board.complete(job.uuid, "a", DONE, None)

    def test_lapsed_claim_is_taken_over_and_old_owner_refused(self, board: JobBoard) -> None:
        job = board.post(FACTORY)
        assert board.claim("stale", 0.0) is not None
        taken = board.claim("fresh", 30.0)
        assert taken is not None and taken.uuid == job.uuid
        assert (taken.owner, taken.attempts) == ("fresh", 2)
        assert not board.complete(job.uuid, "stale", DONE, None)
        assert board.complete(job.uuid, "fresh", DONE, None)

    def test_renewed_claim_is_not_taken(self, board: JobBoard) -> None:
        board.post(FACTORY)
        job = board.claim("a", 0.0)
        assert job is not None and board.renew(job.uuid, "a", 30.0)
        assert board.claim("b", 30.0) is None

    def test_hand_back_refunds_the_attempt(self, board: JobBoard) -> None:
        job = board.post(FACTORY)
        board.claim("a", 30.0)
        assert board.hand_back(job.uuid, "a", delay=0.0, refund=True)
        back = board.get(job.uuid)
        assert (back.state, back.attempts, back.owner) == (READY, 0, None)
        board.claim("a", 30.0)
        assert board.hand_back(job.uuid, "a", delay=30.0, refund=False)
        assert board.get(job.uuid).attempts == 1
        assert board.claim("b", 30.0) is None  # the backoff holds it back

    def test_max_attempts_dead_letter(self, board: JobBoard) -> None:
        job = board.post(FACTORY, max_attempts=2)
        assert board.claim("a", 0.0) is not None
        assert board.claim("b", 0.0) is not None
        assert board.claim("c", 30.0) is None  # claimed twice: not a third time
        idle = board.idle()
        assert (idle.lapsed, idle.lapsed_at_max in (None, 1)) == (1, True)  # None: not counted
        assert board.fail_lapsed() == 1
        assert board.idle().lapsed_at_max in (None, 0)
        dead = board.get(job.uuid)
        assert dead.state == FAILED and dead.attempts == 2
        assert dead.last_error is not None and "max_attempts" in dead.last_error

    @pytest.mark.parametrize(
        ("flow_state", "job_state"),
        [(states.SUCCESS, DONE), (states.FAILURE, FAILED), (states.CANCELLED, CANCELLED)],
    )
    def test_a_lapsed_claim_at_max_attempts_takes_its_flows_end(
        self, board: JobBoard, flow_state: str, job_state: str
    ) -> None:
        # Its conductor could not tell the board (it was unreachable, or the conductor
        # died) that the flow had ended: the persisted end decides, not the attempts.
        job = board.post(FACTORY, max_attempts=1)
        assert board.claim("a", 0.0) is not None
        with board.backend.connect() as conn:
            flow_detail = conn.get_flow_details(job.flow_uuid)
            flow_detail.state = flow_state
            conn.update_flow_details(flow_detail)
        assert board.fail_lapsed() == 1
        ended = board.get(job.uuid)
        assert (ended.state, ended.owner) == (job_state, None)
        if job_state == FAILED:
            assert ended.last_error is not None and "flow ended FAILURE" in ended.last_error
        else:
            assert ended.last_error is None

    def test_expire_ends_a_lease_at_once(self, board: JobBoard) -> None:
        job = board.post(FACTORY)
        board.claim("gone", 300.0)
        assert board.claim("b", 30.0) is None
        assert board.expire(job.uuid, "gone")
        taken = board.claim("b", 30.0)
        assert taken is not None and taken.uuid == job.uuid

    def test_cancel_ready_job(self, board: JobBoard) -> None:
        job = board.post(FACTORY, key="k")
        cancelled = board.cancel(job.uuid)
        assert cancelled.state == CANCELLED
        assert board.claim("a", 30.0) is None
        assert board.post(FACTORY, key="k").uuid != job.uuid  # the key is free again

    def test_cancel_claimed_job_requests_the_flow_cancel(self, board: JobBoard) -> None:
        job = board.post(FACTORY)
        board.claim("a", 30.0)
        assert board.cancel(job.uuid).state == CLAIMED
        with board.backend.connect() as conn:
            assert conn.get_ownership(job.flow_uuid).request == "cancel"

    def test_cancel_ended_job_changes_nothing(self, board: JobBoard) -> None:
        job = board.post(FACTORY)
        board.claim("a", 30.0)
        board.complete(job.uuid, "a", DONE, None)
        assert board.cancel(job.uuid).state == DONE

    def test_retry_failed_job_resets_attempts_and_flow(self, board: JobBoard) -> None:
        job = _failed_job(board, key="k")
        again = board.retry(job.uuid)
        assert (again.state, again.attempts, again.last_error) == (READY, 0, None)
        with board.backend.connect() as conn:
            assert conn.get_flow_details(job.flow_uuid).state == states.PENDING
        assert board.post(FACTORY, key="k").uuid == job.uuid  # the key is held again
        claimed = board.claim("b", 30.0)
        assert claimed is not None and claimed.uuid == job.uuid

    def test_retry_cancelled_job(self, board: JobBoard) -> None:
        job = board.post(FACTORY)
        board.cancel(job.uuid)
        assert board.retry(job.uuid).state == READY

    def test_retry_is_refused_while_another_job_holds_the_key(self, board: JobBoard) -> None:
        job = _failed_job(board, key="k")
        holder = board.post(FACTORY, key="k")
        with pytest.raises(ValueError, match="holds its key"):
            board.retry(job.uuid)
        assert board.get(job.uuid).state == FAILED  # left as it was, its flow too
        with board.backend.connect() as conn:
            assert conn.get_flow_details(job.flow_uuid).state == states.REVERTED
        assert board.post(FACTORY, key="k").uuid == holder.uuid
        claimed = board.claim("a", 30.0)
        assert claimed is not None and claimed.uuid == holder.uuid
        assert board.claim("b", 30.0) is None

    @pytest.mark.parametrize("state", [DONE, READY, CLAIMED])
    def test_retry_other_states_is_value_error(self, board: JobBoard, state: str) -> None:
        job = board.post(FACTORY)
        if state != READY:
            board.claim("a", 30.0)
        if state == DONE:
            board.complete(job.uuid, "a", DONE, None)
        with pytest.raises(ValueError, match=state):
            board.retry(job.uuid)

    def test_wait_returns_once_ended_and_times_out(self, board: JobBoard) -> None:
        job = board.post(FACTORY)
        with pytest.raises(TimeoutError):
            board.wait(job.uuid, timeout=0.1)
        claimed = board.claim("a", 30.0)
        assert claimed is not None
        finish = threading.Timer(0.1, board.complete, (job.uuid, "a", DONE, None))
        finish.start()
        try:
            assert board.wait(job.uuid, timeout=10).state == DONE
        finally:
            finish.join()

    @pytest.mark.parametrize(
        ("kwargs", "error", "match"),
        [
            ({"max_attempts": 0}, ValueError, "max_attempts"),
            ({"delay": -1}, ValueError, "delay"),
            ({"delay": "soon"}, TypeError, "delay"),
            ({"priority": 1.5}, TypeError, "priority"),
            ({"priority": True}, TypeError, "priority"),
            ({"max_attempts": "3"}, TypeError, "max_attempts"),
            ({"key": 7}, TypeError, "key"),
            ({"name": ""}, TypeError, "name"),
            ({"store": ["not", "a", "mapping"]}, TypeError, "store"),
            ({"store": {"x": object()}}, SerializationError, "store"),
            ({"engine": "turbo"}, ValueError, "engine"),
            ({"save": "never"}, ValueError, "save"),
        ],
    )
    def test_bad_input_writes_nothing(
        self, board: JobBoard, kwargs: dict[str, object], error: type[Exception], match: str
    ) -> None:
        with pytest.raises(error, match=match):
            board.post(FACTORY, **kwargs)  # type: ignore[arg-type]
        assert board.jobs() == []
        with board.backend.connect() as conn:
            assert conn.get_logbooks() == []

    @pytest.mark.parametrize("factory", ["no colon", "pkg.mod:", ":fn", "a b:c", "pkg..m:f"])
    def test_factory_that_does_not_parse(self, board: JobBoard, factory: str) -> None:
        with pytest.raises(ValueError, match="factory"):
            board.post(factory)
        assert board.jobs() == []

    def test_any_integer_priority(self, board: JobBoard) -> None:
        big = board.post(FACTORY, priority=2**40)
        negative = board.post(FACTORY, priority=-(2**40))
        assert board.get(big.uuid).priority == 2**40
        assert board.get(negative.uuid).priority == -(2**40)

    def test_concurrent_claims_take_each_job_once(self, board: JobBoard) -> None:
        posted = {board.post(FACTORY).uuid for _ in range(40)}
        taken: list[str] = []
        lock = threading.Lock()

        def worker(name: str) -> None:
            while (job := board.claim(name, 30.0)) is not None:
                with lock:
                    taken.append(job.uuid)
                assert board.complete(job.uuid, name, DONE, None)

        threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert Counter(taken) == Counter(posted)
        assert {job.state for job in board.jobs()} == {DONE}

    def test_idle_tells_what_is_left(self, board: JobBoard) -> None:
        assert board.idle().ready == 0
        board.post(FACTORY, delay=60)
        idle = board.idle()
        assert idle.ready == 1 and idle.next_at is not None
        board.post(FACTORY)
        job = board.claim("a", 30.0)
        assert job is not None
        idle = board.idle()
        assert (job.uuid, "a") in idle.claimed
        assert (idle.ready, idle.lapsed, idle.lapsed_at_max in (None, 0)) == (1, 0, True)
        lapsing = board.post(FACTORY, max_attempts=1)
        assert board.claim("b", 0.0) == board.get(lapsing.uuid)
        idle = board.idle()
        assert (idle.lapsed, idle.lapsed_at_max in (None, 1)) == (1, True)
