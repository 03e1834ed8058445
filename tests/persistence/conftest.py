"""Fixtures for the SQL backend's own tests: a private, empty database per test.

Tests that drop tables or plant a foreign schema revision must not disturb the
session database other tests share, so each gets a database of its own.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import MYSQL_ADMIN, PG_ADMIN, _unavailable, mysql_admin

SQL_KINDS = ["sqlite", "postgresql", "mysql"]


@contextlib.contextmanager
def private_database(kind: str, tmp_path: Path) -> Iterator[str]:
    """Yield the URI of a new empty database of ``kind``; drop it afterwards."""
    name = f"lf_sqltest_{uuid.uuid4().hex[:12]}"
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / (name + '.db')}"
    elif kind == "postgresql":
        import psycopg

        try:
            with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as admin:
                admin.execute(f'CREATE DATABASE "{name}"')
        except psycopg.OperationalError as exc:
            _unavailable("PostgreSQL at 127.0.0.1:5432", exc)
        try:
            yield f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
        finally:
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    else:
        import pymysql

        try:
            admin = mysql_admin(connect_timeout=5)
        except pymysql.err.OperationalError as exc:
            _unavailable("MariaDB", exc)
        with admin:
            admin.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        try:
            yield f"{MYSQL_ADMIN.rsplit('/', 1)[0]}/{name}"
        finally:
            with mysql_admin() as admin:
                admin.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture(params=SQL_KINDS)
def sql_kind(request: pytest.FixtureRequest) -> str:
    """Each SQL engine in turn."""
    kind: str = request.param
    return kind


@pytest.fixture
def fresh_uri(sql_kind: str, tmp_path: Path) -> Iterator[str]:
    """URI of a private, empty database (no schema) of each SQL engine."""
    with private_database(sql_kind, tmp_path) as uri:
        yield uri
