"""What a Redis board sends per call, pinned exactly, and how its pinned connection recovers.

Every command any redis-py connection of this process sends is recorded (the board's
pinned connections and its client's pool alike), so a change that adds a read after a
write, or a second script call, fails here and is made on purpose.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledgerflow.jobs import DONE, READY, JobBoard, open_board
from ledgerflow.jobs.redis import RedisBoard

FACTORY = "bench.never_imported:build"


@pytest.fixture
def board(redis_uri: str, tmp_path: Path) -> Iterator[RedisBoard]:
    """An empty Redis board, its logbooks in SQLite."""
    opened: JobBoard = open_board(redis_uri, backend=f"sqlite:///{tmp_path / 'logbooks.db'}")
    assert isinstance(opened, RedisBoard)
    opened.clear_all()
    try:
        yield opened
    finally:
        opened.clear_all()
        opened.close()


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of every command sent from now on."""
    from redis.connection import AbstractConnection

    names: list[str] = []
    send: Any = AbstractConnection.send_command

    def recording(self: Any, *args: Any, **kwargs: Any) -> Any:
        names.append(str(args[0]))
        return send(self, *args, **kwargs)

    monkeypatch.setattr(AbstractConnection, "send_command", recording)
    return names


def test_post_claim_and_complete_are_one_command_each(board: RedisBoard, sent: list[str]) -> None:
    board.post(FACTORY)  # the first call of a server may load the script: not counted
    taken = board.claim("warm", 30.0)
    assert taken is not None
    board.complete(taken.uuid, "warm", DONE, None)
    sent.clear()

    job = board.post(FACTORY, store={"n": 1})  # the job comes back from the script
    assert sent == ["EVALSHA"] and job.state == READY
    sent.clear()
    claimed = board.claim("a", 30.0)
    assert sent == ["EVALSHA"] and claimed is not None and claimed.uuid == job.uuid
    sent.clear()
    assert board.complete(job.uuid, "a", DONE, None)
    assert sent == ["EVALSHA"]
    sent.clear()
    assert board.claim("a", 30.0) is None
    assert sent == ["EVALSHA"]
    assert board.get(job.uuid).state == DONE


def test_scripts_flushed_on_the_server_are_sent_whole_once(
    board: RedisBoard, sent: list[str]
) -> None:
    job = board.post(FACTORY)
    conn = board._connection()
    conn.send_command("SCRIPT", "FLUSH")
    assert conn.read_response() == "OK"
    sent.clear()
    claimed = board.claim("a", 30.0)
    assert claimed is not None and claimed.uuid == job.uuid
    assert sent == ["EVALSHA", "EVAL"]  # NOSCRIPT ran nothing: one claim, not two
    assert board.get(job.uuid).attempts == 1


def test_a_pinned_connection_killed_by_the_server_reconnects(
    board: RedisBoard, redis_uri: str
) -> None:
    import redis

    job = board.post(FACTORY)
    conn = board._connection()
    conn.send_command("CLIENT", "ID")
    pinned_id = conn.read_response()
    killer = redis.Redis.from_url(redis_uri)
    with killer:
        assert killer.client_kill_filter(_id=pinned_id) == 1
    claimed = board.claim("a", 30.0)
    assert claimed is not None and claimed.uuid == job.uuid
    assert board.complete(job.uuid, "a", DONE, None)


def _post_from_threads(board: JobBoard, count: int) -> None:
    """Post one job from each of ``count`` threads, one thread after the other."""
    for _ in range(count):
        thread = threading.Thread(target=board.post, args=(FACTORY,))
        thread.start()
        thread.join()


def test_threads_that_ended_give_their_connection_back(board: RedisBoard) -> None:
    _post_from_threads(board, 8)
    assert len(board._pinned) == 1  # the last thread's; the others went back to the pool
    pool = board._client.connection_pool
    assert len(pool._in_use_connections) == 1 and pool._created_connections <= 2
    assert len(board.jobs()) == 8
