"""The SQL schema: migrations equal ``tables``, upgrade is idempotent, and only it writes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext

import ledgerflow as lf
from ledgerflow.persistence import records
from ledgerflow.persistence.sql import migrate, tables
from ledgerflow.persistence.sql.backend import SQLBackend
from ledgerflow.testing.conformance import make_book


def _open(uri: str) -> SQLBackend:
    backend = lf.open_backend(uri)
    assert isinstance(backend, SQLBackend)
    return backend


def _diff(backend: SQLBackend, metadata: sa.MetaData) -> list[object]:
    with backend.engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "compare_server_default": True,
                "version_table": migrate.VERSION_TABLE,
            },
        )
        return list(compare_metadata(context, metadata))


def _table_names(backend: SQLBackend) -> set[str]:
    with backend.engine.connect() as conn:
        return set(sa.inspect(conn).get_table_names())


def test_migrated_schema_equals_tables(fresh_uri: str) -> None:
    with _open(fresh_uri) as backend:
        with backend.connect() as conn:
            conn.upgrade()
        assert _diff(backend, tables.metadata) == []
        # the comparison does see differences: a column the migrations lack shows up
        changed = sa.MetaData()
        for table in tables.metadata.tables.values():
            table.to_metadata(changed)
        changed.tables[tables.TASKS.name].append_column(sa.Column("extra", sa.Integer))
        assert _diff(backend, changed) != []


def test_upgrade_is_idempotent_and_keeps_data(fresh_uri: str) -> None:
    with _open(fresh_uri) as backend, backend.connect() as conn:
        conn.upgrade()
        book = conn.save_logbook(make_book())
        conn.upgrade()
        conn.validate()
        assert conn.get_logbook(book.uuid).to_dict() == book.to_dict()
        with backend.engine.connect() as raw:
            versions = raw.execute(sa.text(f"SELECT version_num FROM {migrate.VERSION_TABLE}"))
            assert [row[0] for row in versions] == [migrate.head()]


def _task_indexes(backend: SQLBackend) -> set[str]:
    with backend.engine.connect() as conn:
        found = sa.inspect(conn).get_indexes(tables.TASKS.name)
        return {str(index["name"]) for index in found}


def _insert_raw(raw: sa.Connection, book: lf.LogBook) -> None:
    """Write ``book`` as an older ledgerflow did: only the columns its schema had."""
    reflected = sa.MetaData()
    for kind, rows in (
        ("book", [records.book_to_row(book)]),
        ("flow", [records.flow_to_row(flow, book.uuid) for flow in book]),
        ("task", [records.task_to_row(task, flow.uuid) for flow in book for task in flow]),
    ):
        table = sa.Table(tables.TABLES[kind].name, reflected, autoload_with=raw)
        raw.execute(table.insert(), [{k: v for k, v in r.items() if k in table.c} for r in rows])


def test_upgrade_from_the_first_revision_keeps_data(fresh_uri: str) -> None:
    with _open(fresh_uri) as backend, backend.connect() as conn:
        book = make_book()
        with backend.engine.begin() as raw:
            assert migrate.upgrade(raw, "test store", to="0001")
            _insert_raw(raw, book)
        assert f"ix_{tables.TASKS.name}_updated_at" in _task_indexes(backend)
        with pytest.raises(lf.SchemaVersionError, match="needs upgrade"):
            conn.validate()
        for action in (lambda: conn.get_logbook(book.uuid), lambda: conn.save_logbook(book)):
            with pytest.raises(lf.SchemaVersionError, match=r"'0001'.*needs upgrade"):
                action()
        conn.upgrade()
        conn.validate()
        assert conn.get_logbook(book.uuid).to_dict() == book.to_dict()
        assert all(task.tries == [] for flow in book for task in flow)
        assert _diff(backend, tables.metadata) == []
        dropped = {f"ix_{tables.TASKS.name}_name", f"ix_{tables.TASKS.name}_updated_at"}
        assert _task_indexes(backend) & dropped == set()
        assert f"ix_{tables.TASKS.name}_flow_uuid_id" in _task_indexes(backend)


def test_downgrade_to_0002_drops_tries_and_upgrade_adds_them_back(fresh_uri: str) -> None:
    with _open(fresh_uri) as backend, backend.connect() as conn:
        conn.upgrade()
        with backend.engine.begin() as raw:
            context = migrate._context(raw)
            with Operations.context(context):
                script = migrate._scripts()
                # Newest first: 0005 (index), 0004 (leases), then 0003 (tries) go back down.
                for revision in script.iterate_revisions(migrate.head(), "0002"):
                    if revision.revision != "0002":
                        revision.module.downgrade()
            raw.execute(sa.text(f"UPDATE {migrate.VERSION_TABLE} SET version_num = '0002'"))
        with backend.engine.connect() as raw:
            columns = {c["name"] for c in sa.inspect(raw).get_columns(tables.TASKS.name)}
        assert "tries" not in columns and "attempts" in columns
        with backend.engine.connect() as raw:
            flow_columns = {c["name"] for c in sa.inspect(raw).get_columns(tables.FLOWS.name)}
        assert not flow_columns & {"owner", "fence", "lease_expires_at", "request"}
        conn.upgrade()
        assert _diff(backend, tables.metadata) == []


def test_reading_a_store_without_schema_finds_nothing_and_creates_nothing(
    fresh_uri: str, tmp_path: Path
) -> None:
    with _open(fresh_uri) as backend, backend.connect() as conn:
        assert conn.get_logbooks() == []
        assert conn.list_logbooks(state="RUNNING") == []
        assert conn.count_logbooks() == 0
        assert conn.task_state_counts(["x"]) == {"x": {}}
        for read in (conn.get_logbook, conn.get_flow_details, conn.get_task_details, conn.locate):
            with pytest.raises(lf.NotFound):
                read("no-such-uuid")
        conn.clear_all()
        if backend.address.path is not None:
            assert list(tmp_path.iterdir()) == []  # not even the SQLite file appeared
        else:
            assert _table_names(backend) == set()


def test_writing_without_schema_tells_to_upgrade(fresh_uri: str) -> None:
    with _open(fresh_uri) as backend, backend.connect() as conn:
        with pytest.raises(lf.SchemaVersionError, match="ledgerflow upgrade"):
            conn.save_logbook(make_book())
        with pytest.raises(lf.SchemaVersionError, match="ledgerflow upgrade"):
            conn.validate()


def test_validate_asks_for_upgrade_of_an_old_schema(fresh_uri: str) -> None:
    with _open(fresh_uri) as backend, backend.connect() as conn:
        conn.upgrade()
        with backend.engine.begin() as raw:
            raw.execute(sa.text(f"DELETE FROM {migrate.VERSION_TABLE}"))
            raw.execute(tables.BOOKS.delete())
        with pytest.raises(lf.SchemaVersionError, match="ledgerflow upgrade"):
            conn.validate()


def test_newer_schema_is_refused_and_left_untouched(fresh_uri: str) -> None:
    with _open(fresh_uri) as backend, backend.connect() as conn:
        conn.upgrade()
        book = conn.save_logbook(make_book())
        with backend.engine.begin() as raw:
            raw.execute(sa.text(f"UPDATE {migrate.VERSION_TABLE} SET version_num = '9999'"))
        before = _table_names(backend)
        for action in (conn.upgrade, conn.validate):
            with pytest.raises(lf.SchemaVersionError, match="newer version of ledgerflow"):
                action()
        assert _table_names(backend) == before
        with backend.engine.connect() as raw:
            version = raw.execute(sa.text(f"SELECT version_num FROM {migrate.VERSION_TABLE}"))
            assert version.scalar_one() == "9999"
        assert conn.get_logbook(book.uuid).to_dict() == book.to_dict()


def test_migrations_never_import_ledgerflow() -> None:
    versions = Path(migrate.MIGRATIONS_DIR, "versions")
    files = sorted(versions.glob("*.py"))
    assert files, "no migration found"
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            assert not any(m.split(".")[0] == "ledgerflow" for m in modules), path.name
