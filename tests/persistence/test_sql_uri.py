"""SQL URIs: driver choice, our own options, SQLite settings and connection errors."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

import ledgerflow as lf
from ledgerflow.persistence.sql.backend import SQLBackend
from ledgerflow.persistence.sql.engines import parse_uri
from ledgerflow.testing.conformance import make_book

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("uri", "driver"),
    [
        ("sqlite:///x.db", "sqlite+pysqlite"),
        ("postgresql://u@h/db", "postgresql+psycopg"),
        ("postgres://u@h/db", "postgresql+psycopg"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2"),
        ("postgres+psycopg2://u@h/db", "postgresql+psycopg2"),
        ("mysql://u@h/db", "mysql+pymysql"),
        ("mariadb://u@h/db", "mariadb+pymysql"),
        ("mysql+mysqldb://u@h/db", "mysql+mysqldb"),
    ],
)
def test_plain_schemes_pick_the_extras_driver_explicit_ones_are_kept(uri: str, driver: str) -> None:
    assert parse_uri(uri).url.drivername == driver


def test_our_options_are_stripped_before_sqlalchemy_sees_the_url() -> None:
    address = parse_uri("sqlite:///x.db?synchronous=NORMAL&busy_timeout=1234")
    assert address.synchronous == "normal"
    assert address.busy_timeout_ms == 1234
    assert dict(address.url.query) == {}
    assert dict(parse_uri("postgresql://u@h/db?sslmode=disable").url.query) == {
        "sslmode": "disable"
    }


@pytest.mark.parametrize("query", ["synchronous=off", "busy_timeout=soon"])
def test_bad_options_name_themselves(query: str) -> None:
    with pytest.raises(ValueError, match=query.split("=")[0]):
        parse_uri(f"sqlite:///x.db?{query}")


@pytest.mark.parametrize(
    "uri", ["sqlite:///{tmp}/x.db?bogus=1", "mysql://root@127.0.0.1:1/db?bogus=1"]
)
def test_an_option_the_driver_does_not_know_is_an_error_not_a_warning(
    uri: str, tmp_path: Path
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"unknown option .*bogus"):
            lf.open_backend(uri.format(tmp=tmp_path))
    assert not list(tmp_path.iterdir())


def test_options_the_driver_knows_are_kept(tmp_path: Path) -> None:
    with lf.open_backend(f"sqlite:///{tmp_path}/x.db?timeout=3"):
        pass
    with lf.open_backend("mysql://root@127.0.0.1:1/db?charset=utf8mb4&connect_timeout=2"):
        pass


def _pragmas(backend: SQLBackend) -> dict[str, object]:
    with backend.engine.connect() as conn:
        return {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        }


def test_sqlite_is_durable_by_default(tmp_path: Path) -> None:
    with SQLBackend(f"sqlite:///{tmp_path / 'a.db'}") as backend:
        with backend.connect() as conn:
            conn.upgrade()  # WAL comes with the first write: reading never writes
        assert _pragmas(backend) == {
            "journal_mode": "wal",
            "synchronous": 2,  # FULL
            "foreign_keys": 1,
            "busy_timeout": 30000,
        }


def test_an_upgraded_store_opens_in_wal_and_an_empty_file_stays_untouched(
    tmp_path: Path,
) -> None:
    with SQLBackend(f"sqlite:///{tmp_path / 'a.db'}") as backend, backend.connect() as conn:
        conn.upgrade()
    with SQLBackend(f"sqlite:///{tmp_path / 'a.db'}") as backend:
        assert _pragmas(backend)["journal_mode"] == "wal"
    sqlite3.connect(tmp_path / "empty.db").close()
    with SQLBackend(f"sqlite:///{tmp_path / 'empty.db'}") as backend:
        with backend.connect() as conn:
            assert conn.get_logbooks() == []
        assert _pragmas(backend)["journal_mode"] == "delete"
    assert (tmp_path / "empty.db").stat().st_size == 0


def test_sqlite_synchronous_opt_out(tmp_path: Path) -> None:
    with SQLBackend(f"sqlite:///{tmp_path / 'a.db'}?synchronous=normal") as backend:
        assert _pragmas(backend)["synchronous"] == 1  # NORMAL
    as_dict = {"connection": f"sqlite:///{tmp_path / 'b.db'}", "synchronous": "normal"}
    with lf.open_backend(as_dict) as backend:
        assert isinstance(backend, SQLBackend)
        assert _pragmas(backend)["synchronous"] == 1


def test_sqlite_relative_absolute_and_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for uri, path in (
        ("sqlite:///rel.db", tmp_path / "rel.db"),
        (f"sqlite:///{tmp_path / 'abs.db'}", tmp_path / "abs.db"),  # four slashes
    ):
        with lf.open_backend(uri) as backend, backend.connect() as conn:
            conn.upgrade()
            book = conn.save_logbook(make_book())
        assert path.exists()
        with lf.open_backend(uri) as backend, backend.connect() as conn:
            assert conn.get_logbook(book.uuid).to_dict() == book.to_dict()
    before = set(tmp_path.iterdir())
    with lf.open_backend("sqlite://") as backend:
        with backend.connect() as conn:
            conn.upgrade()
            book = conn.save_logbook(make_book())
        with backend.connect() as other:  # one in-memory database per backend
            assert other.get_logbook(book.uuid).to_dict() == book.to_dict()
    assert set(tmp_path.iterdir()) == before


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
def test_unreachable_server_names_host_and_port_never_the_password(scheme: str) -> None:
    port = _closed_port()
    uri = f"{scheme}://admin:s3cr3t-pw@127.0.0.1:{port}/db"
    backend = lf.open_backend(uri)
    assert "s3cr3t-pw" not in repr(backend)
    with backend, backend.connect() as conn, pytest.raises(lf.StorageError) as caught:
        conn.upgrade()
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message
    assert "s3cr3t-pw" not in message
    # API.md: the driver's exception (psycopg's, PyMySQL's), not SQLAlchemy's wrapper
    driver = "psycopg" if scheme == "postgresql" else "pymysql"
    assert type(caught.value.__cause__).__module__.split(".")[0] == driver


def test_a_sqlite_store_failure_has_sqlite3_error_as_its_cause(tmp_path: Path) -> None:
    (tmp_path / "not-a-db").write_text("plain text, not a SQLite database " * 100)
    backend = lf.open_backend(f"sqlite:///{tmp_path / 'not-a-db'}")
    with backend, backend.connect() as conn, pytest.raises(lf.StorageError) as caught:
        conn.upgrade()
    assert isinstance(caught.value.__cause__, sqlite3.Error)
    (tmp_path / "a-dir").mkdir()
    backend = lf.open_backend(f"sqlite:///{tmp_path / 'a-dir'}")
    with backend, backend.connect() as conn, pytest.raises(lf.StorageError) as caught:
        conn.get_logbooks()
    assert isinstance(caught.value.__cause__, sqlite3.Error)


def _run(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("uri", "module", "extra"),
    [
        ("postgresql://u@127.0.0.1/db", "psycopg", "postgres"),
        ("mysql://u@127.0.0.1/db", "pymysql", "mysql"),
    ],
)
def test_missing_driver_names_the_extra(uri: str, module: str, extra: str) -> None:
    result = _run(
        f"""
        import sys
        sys.modules[{module!r}] = None  # as if the extra were not installed
        import ledgerflow as lf
        try:
            lf.open_backend({uri!r})
        except lf.MissingDriverError as exc:
            print(exc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert f"pip install 'ledgerflow[{extra}]'" in result.stdout


def test_import_ledgerflow_imports_no_driver() -> None:
    result = _run(
        """
        import sys
        import ledgerflow
        loaded = [m for m in ("psycopg", "psycopg2", "pymysql", "sqlite3", "sqlalchemy")
                  if m in sys.modules]
        print(",".join(loaded))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_a_value_over_max_allowed_packet_says_what_to_change() -> None:
    import pymysql
    import sqlalchemy as sa

    from ledgerflow.persistence.sql.engines import translate_errors

    address = parse_uri("mysql://root:pw@127.0.0.1:3306/db")
    refused = pymysql.err.OperationalError(1153, "Got a packet bigger than 'max_allowed_packet'")
    expected = pytest.raises(lf.StorageError, match="SET GLOBAL max_allowed_packet")
    with expected as caught, translate_errors(address, "write"):
        # as the driver reports it: the refusal, then a failed rollback on top of it
        try:
            raise sa.exc.OperationalError("INSERT ...", {"result": "x"}, refused)
        except sa.exc.OperationalError:
            lost = pymysql.err.OperationalError(2013, "Lost connection")
            raise sa.exc.OperationalError(None, None, lost) from None
    assert "127.0.0.1:3306" in str(caught.value)
    assert "pw" not in str(caught.value).replace("max_allowed_packet", "")


def test_upgrade_creates_the_sqlite_files_directory_reads_do_not(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'runs' / 'nested' / 'store.db'}"
    with lf.open_backend(uri) as backend, backend.connect() as conn:
        assert conn.get_logbooks() == []
        assert not (tmp_path / "runs").exists()
        conn.upgrade()
        conn.validate()
    assert (tmp_path / "runs" / "nested" / "store.db").exists()
