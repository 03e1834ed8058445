"""No message, repr or CLI line shows a URI's password, whatever characters it holds."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ledgerflow as lf
from ledgerflow.persistence.sql.engines import parse_uri
from ledgerflow.persistence.uri import local_path, mask_password, redact, split_authority

ROOT = Path(__file__).resolve().parents[2]
#: Any character at all, the URI delimiters above all.
passwords = st.text(alphabet=st.characters(codec="utf-8"), min_size=1).filter(
    lambda text: "\x00" not in text
) | st.text(alphabet="/@:%#?&=+ ![]", min_size=1)
users = st.text(alphabet=st.characters(categories=("L", "N")), min_size=1, max_size=12)


@given(user=users, password=passwords)
def test_mask_hides_any_password_and_keeps_the_rest(user: str, password: str) -> None:
    uri = f"postgresql://{user}:{password}@db.example:5432/runs?sslmode=disable"
    assert mask_password(uri) == f"postgresql://{user}:***@db.example:5432/runs?sslmode=disable"


@given(password=passwords)
def test_the_sql_backend_reads_the_password_whole(password: str) -> None:
    address = parse_uri(f"postgresql://admin:{password}@127.0.0.1:5432/runs")
    assert address.url.host == "127.0.0.1" and address.url.database == "runs"
    if "%" not in password:  # %XX is SQLAlchemy's escape, honoured as it was before
        assert address.url.password == password
    assert address.where == "127.0.0.1:5432 (database 'runs')"


@given(password=passwords)
@settings(max_examples=50)
def test_redact_hides_every_spelling(password: str) -> None:
    uri = f"mysql://root:{password}@127.0.0.1/db"
    for spelling in (password, uri):
        assert password not in redact(f"failed: {spelling} (x)", uri).replace("***", "")
        assert "***" in redact(f"failed: {spelling} (x)", uri)


def test_uris_without_user_info_are_left_alone() -> None:
    for uri in ("sqlite:///a@b.db", "file:///tmp/x@y", "memory://", "postgresql://h/db"):
        assert mask_password(uri) == uri
    authority = split_authority("sqlite:///a:b@c.db")
    assert authority is not None and authority.user is None


def test_local_paths() -> None:
    assert local_path("sqlite:///runs.db") == Path("runs.db")
    assert local_path("sqlite:////abs/runs.db?synchronous=normal") == Path("/abs/runs.db")
    assert local_path("sqlite://") is None and local_path("sqlite:///:memory:") is None
    assert local_path("file:///srv/runs") == Path("/srv/runs")
    assert local_path("postgresql://h/db") is None


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("password", ["s3/cret", "s3@cret", "p:a#s%25s?w", "x@y@z/w"])
@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
def test_backend_repr_and_errors_never_show_the_password(scheme: str, password: str) -> None:
    port = _closed_port()
    uri = f"{scheme}://admin:{password}@127.0.0.1:{port}/db"
    backend = lf.open_backend(uri)
    secret = password.replace("%25", "%")
    assert password not in repr(backend) and secret not in repr(backend)
    with backend, backend.connect() as conn, pytest.raises(lf.StorageError) as caught:
        conn.upgrade()
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message
    assert password not in message and secret not in message
    assert "cannot reach" in message


@pytest.mark.parametrize("password", ["s3/cret", "s3@cret"])
@pytest.mark.parametrize("command", ["upgrade", "books"])
def test_cli_lines_never_show_the_password(password: str, command: str) -> None:
    uri = f"postgresql://postgres:{password}@127.0.0.1:{_closed_port()}/db"
    proc = subprocess.run(
        [sys.executable, "-m", "ledgerflow", "--backend", uri, command],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 1
    assert password not in proc.stdout + proc.stderr
    assert "cret" not in proc.stdout + proc.stderr
    assert "127.0.0.1" in proc.stderr


def test_a_malformed_uri_error_does_not_quote_the_password() -> None:
    with pytest.raises(ValueError) as caught:
        lf.open_backend("postgresql://u:s3cret@127.0.0.1:notaport/db")
    assert "s3cret" not in str(caught.value)
