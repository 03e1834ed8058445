"""Behaviour particular to the ``file://`` backend: naming, locking, crashes, damage."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ledgerflow as lf
from ledgerflow import states
from ledgerflow.persistence.files import FileBackend, FileConnection, documents, fsio
from ledgerflow.persistence.records import Kind
from ledgerflow.testing.conformance import make_book

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("file_worker.py")
HEX_NAME = re.compile(r"[0-9a-f]{64}\.json")


def run_worker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one file_worker command in a fresh interpreter and wait for it."""
    return subprocess.run(
        [sys.executable, str(WORKER), *args],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        check=check,
        timeout=240,
    )


def start_worker(*args: str) -> subprocess.Popen[str]:
    """Start a file_worker command without waiting."""
    return subprocess.Popen(
        [sys.executable, str(WORKER), *args],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` with its content."""
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    """Where the store lives (not created)."""
    return tmp_path / "store"


@pytest.fixture
def backend(store_dir: Path) -> Iterator[lf.Backend]:
    """An upgraded, durable file store."""
    store = lf.open_backend(f"file://{store_dir}")
    with store.connect() as conn:
        conn.upgrade()
    yield store
    store.close()


@pytest.fixture
def conn(backend: lf.Backend) -> Iterator[lf.Connection]:
    """A connection to ``backend``."""
    with backend.connect() as connection:
        yield connection


def record_file(store_dir: Path, kind: Kind, uuid: str) -> Path:
    """The file holding record ``uuid``."""
    return store_dir / documents.record_path(kind, uuid)


# ---- naming ---------------------------------------------------------------------------
HOSTILE = ["../../etc/passwd", "/absolute", "..", "a/../../b", "ünï/cødé", "\\..\\x", "\udc80"]


def test_uuids_never_become_paths(conn: lf.Connection, store_dir: Path, tmp_path: Path) -> None:
    book = lf.LogBook("hostile", uuid=HOSTILE[0])
    for n, uuid in enumerate(HOSTILE[1:4]):
        flow = lf.FlowDetail(f"flow-{n}", uuid=uuid)
        book.add(flow)
    for uuid in HOSTILE[4:]:
        book.flows[0].add(lf.TaskDetail("t", uuid=uuid))
    conn.save_logbook(book)
    assert conn.get_logbook(HOSTILE[0]).to_dict() == book.to_dict()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]
    for path in store_dir.rglob("*"):
        relative = path.relative_to(store_dir)
        if path.is_dir():
            assert str(relative) in documents.DATA_DIRS
        elif len(relative.parts) == 1:
            assert relative.name in {documents.FORMAT_FILE, documents.LOCK_FILE}
        else:
            assert HEX_NAME.fullmatch(relative.name), relative
    stored = json.loads(record_file(store_dir, "book", HOSTILE[0]).read_text())
    assert stored["row"]["uuid"] == HOSTILE[0]


# ---- processes ------------------------------------------------------------------------
def test_processes_incrementing_one_task_lose_no_update(
    conn: lf.Connection, store_dir: Path
) -> None:
    book = make_book(tasks=1)
    book.flows[0].tasks[0].result = 0
    conn.save_logbook(book)
    task_uuid = book.flows[0].tasks[0].uuid
    workers = [start_worker("increment", f"file://{store_dir}", task_uuid, "40") for _ in range(3)]
    for worker in workers:
        out, err = worker.communicate(timeout=240)
        assert worker.returncode == 0, err
        json.loads(out)
    task = conn.get_task_details(task_uuid)
    assert task.result == 120
    assert task.revision == 121


def test_processes_appending_tasks_to_one_flow_lose_none(
    conn: lf.Connection, store_dir: Path
) -> None:
    book = conn.save_logbook(make_book(tasks=0))
    flow_uuid = book.flows[0].uuid
    uri = f"file://{store_dir}?fsync=false"
    workers = [start_worker("add-tasks", uri, flow_uuid, f"w{n}", "15") for n in range(3)]
    for worker in workers:
        _, err = worker.communicate(timeout=240)
        assert worker.returncode == 0, err
    names = [task.name for task in conn.get_tasks_for_flow(flow_uuid)]
    assert sorted(names) == sorted(f"w{n}-{i}" for n in range(3) for i in range(15))
    for n in range(3):  # each writer's tasks kept the order it added them in
        mine = [name for name in names if name.startswith(f"w{n}-")]
        assert mine == [f"w{n}-{i}" for i in range(15)]


def test_a_stale_write_after_another_process_wrote_conflicts(
    conn: lf.Connection, store_dir: Path
) -> None:
    book = make_book(tasks=1)
    book.flows[0].tasks[0].result = 10
    conn.save_logbook(book)
    stale = conn.get_task_details(book.flows[0].tasks[0].uuid)
    run_worker("increment", f"file://{store_dir}", stale.uuid, "1")
    stale.result = 999
    with pytest.raises(lf.ConflictError, match="revision"):
        conn.update_task_details(stale)
    assert conn.get_task_details(stale.uuid).result == 11


# ---- crashes --------------------------------------------------------------------------
def assert_whole(conn: lf.Connection, store_dir: Path, flows: int, tasks: int) -> int:
    """Every book loads with all its flows and tasks; no orphan record exists."""
    books = conn.get_logbooks()
    for book in books:
        assert len(book) == flows
        assert all(len(flow) == tasks for flow in book)
    assert len(fsio.json_names(store_dir / "flows")) == len(books) * flows
    assert len(fsio.json_names(store_dir / "tasks")) == len(books) * flows * tasks
    return len(books)


@pytest.mark.slow
def test_sigkill_during_save_leaves_all_or_nothing(conn: lf.Connection, store_dir: Path) -> None:
    flows, tasks = 8, 12
    committed: list[str] = []
    chance = random.Random(20261128)
    kills = mid_commit = 0
    # Kill at random moments until at least two kills landed between the journal and
    # its removal (about 40% of them do), so the replay path is surely exercised.
    while kills < 20 and (kills < 4 or mid_commit < 2):
        uri = f"file://{store_dir}?fsync=false"
        worker = start_worker("save-loop", uri, str(flows), str(tasks))
        assert worker.stdout is not None
        committed.append(worker.stdout.readline().strip())  # at least one save returned
        time.sleep(chance.uniform(0.0, 0.4))
        worker.send_signal(signal.SIGKILL)
        out, _ = worker.communicate(timeout=60)
        assert worker.returncode == -signal.SIGKILL
        committed.extend(line for line in out.split() if line)
        kills += 1
        mid_commit += (store_dir / documents.JOURNAL_FILE).exists()
        assert_whole(conn, store_dir, flows, tasks)  # this read replays any journal
        assert not (store_dir / documents.JOURNAL_FILE).exists()
    assert mid_commit >= 1
    stored = {book.uuid for book in conn.get_logbooks()}
    assert set(committed) <= stored  # a save that returned is never lost


@pytest.mark.parametrize(
    ("replace", "landed"),
    [(1, False), (2, True), (9, True)],
    ids=["before-journal", "after-journal", "mid-apply"],
)
def test_sigkill_at_each_step_of_a_commit(
    conn: lf.Connection, store_dir: Path, replace: int, landed: bool
) -> None:
    done = run_worker("die-before-replace", f"file://{store_dir}", str(replace), check=False)
    assert done.returncode == -signal.SIGKILL
    doomed = json.loads(done.stdout)
    assert (store_dir / documents.JOURNAL_FILE).exists() == (replace > 1)
    if landed:  # a reader replays the journal before it looks
        book = conn.get_logbook(doomed["book"])
        assert [flow.uuid for flow in book] == doomed["flows"]
        assert all(len(flow) == 4 for flow in book)
    else:
        with pytest.raises(lf.NotFound):
            conn.get_logbook(doomed["book"])
        assert fsio.json_names(store_dir / "tasks") == []
    assert not (store_dir / documents.JOURNAL_FILE).exists()
    with lf.open_backend(f"file://{store_dir}").connect() as later:
        later.save_logbook(make_book())  # the next process's first write sweeps temp files
    leftovers = [p for p in store_dir.rglob("*") if p.name.endswith(fsio.TEMP_SUFFIX)]
    assert leftovers == []


def test_corrupt_journal_is_refused_not_guessed(conn: lf.Connection, store_dir: Path) -> None:
    book = conn.save_logbook(make_book())
    (store_dir / documents.JOURNAL_FILE).write_text('{"writes": [["../../x", {}]]')
    with pytest.raises(lf.CorruptRecordError, match="journal"):
        conn.get_logbook(book.uuid)
    (store_dir / documents.JOURNAL_FILE).write_text(
        json.dumps({"format": 1, "clear": False, "writes": [["../../x.json", {}]]})
    )
    with pytest.raises(lf.CorruptRecordError, match="move it away"):
        conn.save_logbook(make_book())
    assert not (store_dir.parent / "x.json").exists()


# ---- damage ---------------------------------------------------------------------------
def _other_task_file(store_dir: Path, book: lf.LogBook) -> bytes:
    return record_file(store_dir, "task", book.flows[1].tasks[0].uuid).read_bytes()


@pytest.mark.parametrize(
    "damage",
    ["truncated", "not-json", "not-an-object", "missing-column", "bad-time", "other-record"],
)
def test_a_corrupt_record_is_named_and_the_rest_loads(
    conn: lf.Connection, store_dir: Path, damage: str
) -> None:
    book = conn.save_logbook(make_book(flows=2, tasks=2))
    other = conn.save_logbook(make_book("other"))
    victim = book.flows[0].tasks[1]
    path = record_file(store_dir, "task", victim.uuid)
    text = path.read_bytes()
    document = json.loads(text)
    if damage == "missing-column":
        del document["row"]["state"]
    if damage == "bad-time":
        document["row"]["created_at"] = "yesterday"
    path.write_bytes(
        {
            "truncated": text[: len(text) // 2],
            "not-json": b"\x00\xffgarbage",
            "not-an-object": b"[]",
            "missing-column": json.dumps(document).encode(),
            "bad-time": json.dumps(document).encode(),
            "other-record": _other_task_file(store_dir, book),
        }[damage]
    )
    with pytest.raises(lf.CorruptRecordError) as info:
        conn.get_task_details(victim.uuid)
    assert victim.uuid in str(info.value) and str(path) in str(info.value)
    assert isinstance(info.value, lf.StorageError)
    with pytest.raises(lf.CorruptRecordError, match=re.escape(victim.uuid)):
        conn.get_logbook(book.uuid)
    assert conn.get_task_details(book.flows[0].tasks[0].uuid).to_dict() == (
        book.flows[0].tasks[0].to_dict()
    )
    assert conn.get_flow_details(book.flows[1].uuid).to_dict() == book.flows[1].to_dict()
    assert conn.get_logbook(other.uuid).to_dict() == other.to_dict()


def test_a_task_document_written_before_tries_reads_back_with_none(
    conn: lf.Connection, store_dir: Path
) -> None:
    book = conn.save_logbook(make_book(tasks=1))
    task = book.flows[0].tasks[0]
    path = record_file(store_dir, "task", task.uuid)
    document = json.loads(path.read_bytes())
    del document["row"]["tries"]  # the shape an earlier ledgerflow wrote
    path.write_bytes(json.dumps(document).encode())
    loaded = conn.get_task_details(task.uuid)
    assert loaded.tries == [] and loaded.to_dict() == task.to_dict()
    loaded.state = states.RUNNING
    conn.update_task_details(loaded)
    assert "tries" in json.loads(path.read_bytes())["row"]


def test_a_corrupt_book_file_is_named_by_path_when_listing(
    conn: lf.Connection, store_dir: Path
) -> None:
    book = conn.save_logbook(make_book())
    path = record_file(store_dir, "book", book.uuid)
    path.write_text("{")
    with pytest.raises(lf.CorruptRecordError, match=re.escape(str(path))):
        conn.get_logbooks()


def test_leftover_temp_files_are_ignored_then_cleaned(backend: lf.Backend, store_dir: Path) -> None:
    with backend.connect() as conn:
        book = conn.save_logbook(make_book())
    stray = store_dir / "books" / f"{fsio.TEMP_PREFIX}x.json.abc{fsio.TEMP_SUFFIX}"
    stray.write_text("{half a record")
    with backend.connect() as conn:
        assert [b.uuid for b in conn.get_logbooks()] == [book.uuid]
    with backend.connect() as conn:
        conn.save_logbook(make_book())
    assert stray.exists()  # this backend swept when it first wrote; upgrade sweeps again
    with backend.connect() as conn:
        conn.upgrade()
    assert not stray.exists()
    stray.write_text("{half a record")
    with lf.open_backend(f"file://{store_dir}").connect() as conn:  # a new process, in effect
        conn.save_logbook(make_book())
    assert not stray.exists()


# ---- format ---------------------------------------------------------------------------
def test_a_newer_format_is_refused_and_nothing_changes(
    conn: lf.Connection, store_dir: Path
) -> None:
    book = conn.save_logbook(make_book())
    (store_dir / documents.FORMAT_FILE).write_text(
        json.dumps({"format": documents.FORMAT_NAME, "version": documents.FORMAT_VERSION + 1})
    )
    before = snapshot(store_dir)
    fresh = lf.open_backend(f"file://{store_dir}").connect()
    for call in (
        fresh.upgrade,
        fresh.validate,
        lambda: fresh.save_logbook(make_book()),
        lambda: fresh.get_logbook(book.uuid),
        fresh.get_logbooks,
        fresh.clear_all,
        lambda: fresh.destroy_logbook(book.uuid),
    ):
        with pytest.raises(lf.SchemaVersionError, match="newer"):
            call()
    assert snapshot(store_dir) == before


@pytest.mark.parametrize("exists", [False, True], ids=["missing", "empty"])
def test_reading_an_absent_store_creates_nothing(tmp_path: Path, exists: bool) -> None:
    store_dir = tmp_path / "never"
    if exists:
        store_dir.mkdir()
    with lf.open_backend(f"file://{store_dir}").connect() as conn:
        assert conn.get_logbooks() == []
        assert conn.list_logbooks(state=states.FAILURE) == []
        assert conn.count_logbooks() == 0
        assert conn.task_state_counts(["x"]) == {"x": {}}
        for call in (
            conn.get_logbook,
            conn.get_flow_details,
            conn.get_task_details,
            conn.get_flows_for_book,
            conn.get_tasks_for_flow,
            conn.locate,
        ):
            with pytest.raises(lf.NotFound):
                call("some-uuid")
        with pytest.raises(lf.SchemaVersionError, match="ledgerflow upgrade"):
            conn.validate()
    assert store_dir.exists() == exists
    if exists:
        assert list(store_dir.iterdir()) == []


def test_upgrade_writes_the_format_and_validate_accepts_it(
    tmp_path: Path,
) -> None:
    store_dir = tmp_path / "a" / "b"
    with lf.open_backend(f"file://{store_dir}").connect() as conn:
        conn.upgrade()
        conn.validate()
    stored = json.loads((store_dir / documents.FORMAT_FILE).read_text())
    assert stored == {"format": documents.FORMAT_NAME, "version": documents.FORMAT_VERSION}


# ---- options --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("uri", "options", "durable"),
    [
        ("file:///tmp/x", {}, True),
        ("file:///tmp/x?fsync=false", {}, False),
        ("file:///tmp/x?fsync=0", {}, False),
        ("file:///tmp/x?fsync=yes", {}, True),
        ("file://localhost/tmp/x", {}, True),
        ("file:///tmp/x", {"fsync": False}, False),
        ("file:///tmp/x?synchronous=normal", {}, False),  # the SQLite spelling works too
        ("file:///tmp/x?synchronous=FULL", {}, True),
        ("file:///tmp/x", {"synchronous": "normal"}, False),
    ],
)
def test_fsync_option_parses(uri: str, options: dict[str, object], durable: bool) -> None:
    backend = lf.open_backend({"connection": uri, **options})
    assert isinstance(backend, FileBackend)
    assert backend.durable is durable
    assert backend.path == Path("/tmp/x")


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("file:///tmp/x?fsync=maybe", "fsync='maybe'"),
        ("file:///tmp/x?synchronous=off", "synchronous='off'"),
        ("file:///tmp/x?sync=false", "unknown file store option"),
        ("file://relative/dir", "absolute path"),
        ("file:///", "absolute directory"),
    ],
)
def test_bad_uris_are_clear_errors(uri: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        lf.open_backend(uri)


@pytest.mark.parametrize("durable", [True, False])
def test_fsync_follows_the_option(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch, durable: bool
) -> None:
    with lf.open_backend(f"file://{store_dir}?fsync={str(durable).lower()}").connect() as conn:
        book = conn.save_logbook(make_book())
        calls: list[int] = []
        real_fsync = os.fsync

        def counting_fsync(fd: int) -> None:
            calls.append(fd)
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", counting_fsync)
        conn.update_task_details(book.flows[0].tasks[0])
    assert len(calls) == (2 if durable else 0)  # the file, then its directory


def test_a_single_record_update_writes_one_file_and_no_journal(
    conn: lf.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    book = conn.save_logbook(make_book(tasks=3))
    written: list[str] = []
    real_write = fsio.write_atomic

    def spy(path: Path, data: bytes, **kwargs: bool) -> None:
        written.append(path.parent.name)
        real_write(path, data, **kwargs)

    monkeypatch.setattr(fsio, "write_atomic", spy)
    conn.update_task_details(book.flows[0].tasks[0])
    assert written == ["tasks"]
    written.clear()
    conn.update_details(*book.flows[0].tasks[:2])
    assert written == ["store", "tasks", "tasks"]  # journal first, then the records


# ---- OS errors ------------------------------------------------------------------------
def test_os_errors_become_storage_errors_naming_the_path(
    conn: lf.Connection, store_dir: Path
) -> None:
    kept = conn.save_logbook(make_book())
    for name in os.listdir(store_dir / "flows"):
        os.unlink(store_dir / "flows" / name)
    os.rmdir(store_dir / "flows")
    (store_dir / "flows").write_text("not a directory")
    with pytest.raises(lf.StorageError) as info:
        conn.save_logbook(make_book())
    assert isinstance(info.value.__cause__, OSError)
    assert str(store_dir / "flows") in str(info.value)
    assert conn.get_logbook(kept.uuid, lazy=True).uuid == kept.uuid


def test_a_full_disk_is_a_storage_error_and_writes_nothing(
    conn: lf.Connection, store_dir: Path
) -> None:
    kept = conn.save_logbook(make_book())
    done = run_worker("too-big", f"file://{store_dir}")
    outcome = json.loads(done.stdout)
    assert (outcome["cause"], outcome["errno"]) == ("OSError", errno.EFBIG)
    assert str(store_dir) in outcome["error"]
    with pytest.raises(lf.NotFound):
        conn.get_logbook(outcome["book"])
    assert conn.get_logbook(kept.uuid).to_dict() == kept.to_dict()
    assert not (store_dir / documents.JOURNAL_FILE).exists()


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """Make ``directory`` refuse new files, even to root (via the immutable attribute)."""
    if os.geteuid() != 0:
        directory.chmod(0o555)
        try:
            yield
        finally:
            directory.chmod(0o755)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(directory)], check=False).returncode:
        pytest.skip("running as root without a working chattr: cannot make a directory read-only")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(directory)], check=True)


def test_a_read_only_store_is_a_storage_error(conn: lf.Connection, store_dir: Path) -> None:
    book = conn.save_logbook(make_book())
    task = book.flows[0].tasks[0]
    with read_only(store_dir / "tasks"):
        with pytest.raises(lf.StorageError, match=re.escape(str(store_dir / "tasks"))) as info:
            conn.update_task_details(task)
        assert isinstance(info.value.__cause__, PermissionError)
        assert task.revision == 1  # the failed commit did not bump the object
        assert conn.get_task_details(task.uuid).revision == 1  # reads still work
        assert conn.get_logbook(book.uuid).to_dict() == book.to_dict()


# ---- fork -----------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_a_forked_child_takes_its_own_locks(conn: lf.Connection) -> None:
    assert isinstance(conn, FileConnection)
    book = conn.save_logbook(make_book(tasks=2))
    first, second = book.flows[0].tasks
    with conn._transaction():  # hold the thread lock and the flock across the fork
        first.result = "parent"
        conn.update_task_details(first)
        pid = os.fork()
        if pid == 0:  # the child must not join the parent's open transaction
            code = 1
            try:
                second.result = "child"
                conn.update_task_details(second)
                code = 0
            finally:
                os._exit(code)
        time.sleep(0.2)
        assert os.waitpid(pid, os.WNOHANG) == (0, 0)  # blocked on our flock meanwhile
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert conn.get_task_details(first.uuid).result == "parent"
    assert conn.get_task_details(second.uuid).result == "child"


# ---- documents ------------------------------------------------------------------------
_times = st.datetimes(timezones=st.just(UTC)) | st.datetimes(min_value=datetime(1900, 1, 1)).map(
    lambda moment: moment.replace(tzinfo=timezone(timedelta(hours=5, minutes=30)))
)


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(max_size=40),
    uuid=st.text(min_size=1, max_size=255).filter(lambda u: "\x00" not in u),
    moment=_times,
    optional=st.none() | _times,
    number=st.integers(min_value=0, max_value=2**62),
)
def test_task_documents_round_trip(
    text: str, uuid: str, moment: datetime, optional: datetime | None, number: int
) -> None:
    row = {
        "uuid": uuid, "flow_uuid": text or "f", "name": text, "type": None, "version": "1.0",
        "state": states.RUNNING, "result": json.dumps(text), "failure": None,
        "revert_failure": None, "meta": "{}", "checkpoint": "null", "attempts": number,
        "tries": None if optional is None else json.dumps([{"attempt": 1, "state": text}]),
        "started_at": optional, "finished_at": None, "created_at": moment,
        "updated_at": moment, "revision": number,
    }  # fmt: skip
    data = documents.encode(documents.row_to_document("task", row))
    loaded = documents.document_to_row("task", documents.decode(data))
    assert loaded == row  # equal instants, now in UTC
    assert loaded["created_at"].utcoffset() == timedelta(0)
    assert documents.file_name(uuid) == documents.file_name(loaded["uuid"])
