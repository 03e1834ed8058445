"""Each store failure is reported in words that fit it (issue 12: "wrong words")."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.conftest import MYSQL_ADMIN, PG_ADMIN

import ledgerflow as lf
from ledgerflow.persistence.sql.engines import parse_uri, translate_errors
from ledgerflow.testing.conformance import make_book


def _fails(uri: str) -> str:
    backend = lf.open_backend(uri)
    with backend, backend.connect() as conn, pytest.raises(lf.StorageError) as caught:
        conn.count_logbooks()
    return str(caught.value)


def test_a_missing_postgresql_database_is_named_as_such() -> None:
    name = f"lf_missing_{uuid.uuid4().hex[:8]}"
    message = _fails(f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}")
    assert f"has no database '{name}'" in message and "cannot reach" not in message


def test_a_missing_postgresql_role_is_named_as_such() -> None:
    role = f"lf_nobody_{uuid.uuid4().hex[:8]}"
    message = _fails(f"postgresql://{role}@127.0.0.1:5432/postgres")
    assert f"has no role '{role}'" in message and "cannot reach" not in message


def test_a_missing_mysql_database_and_a_refused_login() -> None:
    name = f"lf_missing_{uuid.uuid4().hex[:8]}"
    message = _fails(f"{MYSQL_ADMIN.rsplit('/', 1)[0]}/{name}")
    assert f"has no database '{name}'" in message and "cannot reach" not in message
    message = _fails("mysql://lf_nobody:pw@127.0.0.1:3306/test")
    assert "refused user 'lf_nobody'" in message and "pw" not in message.replace("password", "")


def test_sqlite_with_two_slashes_names_the_mistake_not_the_internal_url() -> None:
    with pytest.raises(ValueError) as caught:
        lf.open_backend("sqlite://runs.db")
    message = str(caught.value)
    assert "sqlite:///runs.db" in message and "three slashes" in message
    assert "pysqlite" not in message


def test_an_unknown_mysql_charset_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown charset 'bogus'"):
        lf.open_backend("mysql://root@127.0.0.1:3306/test?charset=bogus")


def test_the_cli_says_the_same_in_one_line(tmp_path: Path) -> None:
    for uri, words in [
        ("sqlite://runs.db", "three slashes"),
        ("mysql://root@127.0.0.1:3306/test?charset=bogus", "unknown charset"),
    ]:
        proc = subprocess.run(
            [sys.executable, "-m", "ledgerflow", "--backend", uri, "books"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
        )
        assert proc.returncode == 2, proc.stderr
        assert words in proc.stderr and "AttributeError" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert not list(tmp_path.iterdir())


@contextlib.contextmanager
def _tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_full_disk_while_opening_says_the_disk_is_full(tmp_path: Path) -> None:
    with _tiny_disk(tmp_path) as disk:
        (disk / "filler").write_bytes(b"x" * (60 * 1024))
        backend = lf.open_backend(f"sqlite:///{disk / 'runs.db'}")
        with backend, backend.connect() as conn, pytest.raises(lf.StorageError) as caught:
            conn.upgrade()
    message = str(caught.value)
    assert "is full" in message and "runs.db" in message
    assert "cannot open" not in message


def test_a_locked_file_is_not_upgraded_and_says_it_is_locked(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'runs.db'}?busy_timeout=200"
    with lf.open_backend(uri) as backend, backend.connect() as conn:
        conn.upgrade()
        book = conn.save_logbook(make_book())
    holder = sqlite3.connect(tmp_path / "runs.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        with lf.open_backend(uri) as backend, backend.connect() as conn:
            conn.upgrade()  # up to date: no lock needed, returns at once
            assert conn.get_logbook(book.uuid).name == book.name  # WAL: reads go on
            with pytest.raises(lf.StorageError) as caught:
                conn.destroy_logbook(book.uuid)
        message = str(caught.value)
        assert "is locked by another process" in message and "upgrade" not in message
    finally:
        holder.rollback()
        holder.close()


def test_only_a_uniqueness_violation_is_a_conflict(tmp_path: Path) -> None:
    address = parse_uri(f"sqlite:///{tmp_path / 'x.db'}")
    engine = sa.create_engine(address.url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (k TEXT UNIQUE, v TEXT NOT NULL)")
        conn.exec_driver_sql("INSERT INTO t VALUES ('a', 'x')")
    with engine.begin() as conn, pytest.raises(lf.ConflictError), translate_errors(address, "w"):
        conn.exec_driver_sql("INSERT INTO t VALUES ('a', 'y')")
    with engine.begin() as conn, pytest.raises(lf.StorageError) as caught:  # noqa: SIM117
        with translate_errors(address, "write"):
            conn.exec_driver_sql("INSERT INTO t VALUES ('b', NULL)")
    assert not isinstance(caught.value, lf.ConflictError)
    assert "refused a record" in str(caught.value)
    engine.dispose()
