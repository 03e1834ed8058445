"""The board's server restarts under load: no job lost, none run twice to completion, none
wrongly FAILED.

Two conductor processes run jobs while the server under the board restarts for real:
PostgreSQL (``pg_ctlcluster ... restart -m immediate``; it is shared by every test that
runs at the same time, so the test is opt-in like tests/engine/test_outages.py) and a
private Redis server on a port of its own (kill -9, then started again on its files).

A Redis restart keeps the board only as far as Redis kept it on disk: the private server
here runs with ``appendonly yes`` and ``appendfsync always``, as a board that must lose
no job needs.  Without persistence a restart empties the board; the logbooks and their
fences stay in the logbook store, so even then no flow runs twice to completion.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import ledgerflow as lf
from ledgerflow.jobs import DONE, JobBoard
from tests.persistence.conftest import private_database

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(400)]

ROOT = Path(__file__).resolve().parents[2]
FLOWS = "tests.jobs.job_flows"
JOBS = 80
CONDUCTORS = 2
WORKERS = 2


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    env.pop("LEDGERFLOW_BACKEND", None)
    return env


def _conductor(backend: str, board: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "ledgerflow", "--backend", backend, "conductor"]
    options = ["--board", board, "--workers", str(WORKERS), "--lease", "10", "--poll", "0.2"]
    return subprocess.Popen(
        [*command, *options],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _done(board: JobBoard) -> int:
    """How many jobs are DONE; -1 while the board cannot be read (the server is down)."""
    try:
        return len(board.jobs(state=DONE))
    except lf.StorageError:
        return -1


def _wait_for(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def _run_through_a_restart(
    board_uri: str, backend_uri: str, tmp_path: Path, restart: Callable[[], None]
) -> None:
    """Post JOBS jobs, start the conductors, restart the server a quarter way through."""
    marker = tmp_path / "marker"
    board = lf.open_board(board_uri, backend=None if board_uri == backend_uri else backend_uri)
    # One attempt each: a claim that lapses through the outage would make its job FAILED.
    jobs = [
        board.post(f"{FLOWS}:paced", store={"marker": str(marker), "n": n}, max_attempts=1)
        for n in range(JOBS)
    ]
    conductors = [_conductor(backend_uri, board_uri) for _ in range(CONDUCTORS)]
    try:
        _wait_for(lambda: _done(board) >= JOBS // 4, 120)
        restart()
        _wait_for(lambda: _done(board) == JOBS, 240)
    finally:
        for process in conductors:
            process.send_signal(signal.SIGTERM)
        outputs = [process.communicate(timeout=120) for process in conductors]
    for process, (_, err) in zip(conductors, outputs, strict=True):
        assert process.returncode == 0, err
    ended = [board.get(job.uuid) for job in jobs]
    assert {(job.state, job.attempts) for job in ended} == {(DONE, 1)}  # none lost or FAILED
    finished = Counter(
        line.split()[1] for out, _ in outputs for line in out.splitlines() if line.startswith(DONE)
    )
    assert finished == Counter(job.uuid for job in jobs)  # each ended once, by one conductor
    with board.backend.connect() as conn:
        for job in jobs:
            flow_detail = conn.get_flow_details(job.flow_uuid)
            assert flow_detail.state == lf.states.SUCCESS
            assert [td.state for td in flow_detail] == [lf.states.SUCCESS] * 2
    ran = Counter(int(line.split()[1]) for line in marker.read_text().splitlines())
    assert set(ran) == set(range(JOBS))
    # A task runs again only where the restart cut its run short (a flow's lease ran
    # out meanwhile and another conductor took it): at most the jobs then in flight.
    assert sum(ran.values()) - JOBS <= CONDUCTORS * WORKERS, ran
    board.close()


@pytest.mark.skipif(
    os.environ.get("LEDGERFLOW_TEST_PG_RESTART") != "1",
    reason="restarts the shared PostgreSQL server: set LEDGERFLOW_TEST_PG_RESTART=1 (.ci/run does)",
)
def test_a_postgresql_board_restarting_under_load(tmp_path: Path) -> None:
    def restart() -> None:
        version = next(iter(os.listdir("/etc/postgresql")))
        command = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"]
        subprocess.run([*command, "-m", "immediate"], check=True, timeout=120)

    with private_database("postgresql", tmp_path) as uri:
        _run_through_a_restart(uri, uri, tmp_path, restart)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class _PrivateRedis:
    """A redis-server of this test's own, keeping every write on disk before it answers."""

    def __init__(self, directory: Path) -> None:
        self.port = _free_port()
        self.command = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(directory),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ]
        self.process = self._start()

    @property
    def uri(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _start(self) -> subprocess.Popen[bytes]:
        import redis

        process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_timeout=1)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                assert process.poll() is None, "redis-server exited"
                return False

        _wait_for(answers, 30)
        client.close()
        return process

    def kill_and_start(self) -> None:
        """kill -9 the server, then start it again on the same files."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.process = self._start()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[_PrivateRedis]:
    """A private Redis server (skipped where there is no redis-server)."""
    pytest.importorskip("redis")
    if subprocess.run(["which", "redis-server"], capture_output=True).returncode != 0:
        pytest.skip("no redis-server on this machine")
    directory = tmp_path / "redis"
    directory.mkdir()
    server = _PrivateRedis(directory)
    yield server
    server.stop()


def test_a_redis_board_restarting_under_load(private_redis: _PrivateRedis, tmp_path: Path) -> None:
    with private_database("postgresql", tmp_path) as logbooks:
        _run_through_a_restart(private_redis.uri, logbooks, tmp_path, private_redis.kill_and_start)
