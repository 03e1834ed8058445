"""Fixtures shared by every test: one backend fixture over all five built-in stores.

PostgreSQL and MariaDB are real servers.  Each test session works in a database
of its own (created here, dropped afterwards) so parallel runs never collide.
Outside CI a missing server skips its tests with a message naming it; with
CI=true it fails them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from sqlalchemy.engine import make_url

import ledgerflow as lf
from ledgerflow.persistence.sql.backend import SQLBackend
from ledgerflow.persistence.uri import mask_password

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PG_ADMIN = os.environ.get("LEDGERFLOW_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_ADMIN = os.environ.get("LEDGERFLOW_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test")
RUN_ID = uuid.uuid4().hex[:10]

# The machines are noisy (2 shared cores): no per-example deadline.  CI draws the same
# examples on every run, so a red CI run can be replayed and a green one means the same.
settings.register_profile("local", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
settings.load_profile("ci" if IN_CI else "local")


def _unavailable(server: str, exc: BaseException) -> None:
    message = f"{server} is not reachable ({exc}); start it or unset CI to skip"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def _pg_database() -> Iterator[str]:
    import psycopg

    name = f"lf_test_{RUN_ID}"
    admin = PG_ADMIN.replace("postgresql://", "postgresql://", 1)
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        _unavailable("PostgreSQL at 127.0.0.1:5432", exc)
    base = admin.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def mysql_admin(**kwargs: Any) -> Any:
    """A PyMySQL connection to the server LEDGERFLOW_TEST_MYSQL names (no database)."""
    import pymysql

    url = make_url(MYSQL_ADMIN)
    return pymysql.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 3306,
        user=url.username or "root",
        password=url.password or "",
        **kwargs,
    )


def _mysql_database() -> Iterator[str]:
    import pymysql

    name = f"lf_test_{RUN_ID}"
    try:
        conn = mysql_admin(connect_timeout=5)
    except pymysql.err.OperationalError as exc:
        _unavailable(f"MariaDB at {mask_password(MYSQL_ADMIN)}", exc)
    with conn:
        conn.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    base = MYSQL_ADMIN.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with mysql_admin() as conn:
            conn.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture(scope="session")
def postgres_uri() -> Iterator[str]:
    """URI of a fresh PostgreSQL database for this test session."""
    yield from _pg_database()


@pytest.fixture
def pg_store(postgres_uri: str) -> Iterator[SQLBackend]:
    """An upgraded, emptied PostgreSQL store (emptied again afterwards)."""
    backend = lf.open_backend(postgres_uri)
    assert isinstance(backend, SQLBackend)
    with backend.connect() as conn:
        conn.upgrade()
        conn.clear_all()
    yield backend
    with backend.connect() as conn:
        conn.clear_all()
    backend.close()


@pytest.fixture(scope="session")
def mysql_uri() -> Iterator[str]:
    """URI of a fresh MariaDB database for this test session."""
    yield from _mysql_database()


BACKENDS = ["memory", "sqlite", "file", "postgresql", "mysql"]


def backend_uri(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Return a URI of an empty store of ``kind``."""
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    if kind == "file":
        return f"file://{tmp_path / 'store'}"
    if kind == "postgresql":
        uri: str = request.getfixturevalue("postgres_uri")
        return uri
    uri = request.getfixturevalue("mysql_uri")
    return uri


@pytest.fixture(params=BACKENDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    """Each built-in backend kind in turn."""
    kind: str = request.param
    return kind


@pytest.fixture
def backend(
    backend_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[lf.Backend]:
    """An empty, upgraded store of each kind; servers are cleared before and after."""
    store = lf.open_backend(backend_uri(backend_kind, request, tmp_path))
    with store.connect() as conn:
        conn.upgrade()
        conn.clear_all()
    try:
        yield store
    finally:
        with store.connect() as conn:
            conn.clear_all()
        store.close()
