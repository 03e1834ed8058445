"""Run the Alembic migrations programmatically, on the caller's connection.

No ``alembic.ini`` and no ``env.py``: the revisions are read from ``migrations/versions``
and applied through a ``MigrationContext`` bound to the connection we are given, inside
the transaction the caller opened.  Our version table has a name of its own, so a
database shared with an application that uses Alembic too keeps both histories apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from alembic.config import Config
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect

from ledgerflow.errors import SchemaVersionError
from ledgerflow.persistence.sql.tables import TABLES

__all__ = ["VERSION_TABLE", "SchemaStatus", "head", "schema_status", "upgrade"]

VERSION_TABLE: Final = "ledgerflow_alembic_version"
MIGRATIONS_DIR: Final = Path(__file__).with_name("migrations")

_script: ScriptDirectory | None = None


def _scripts() -> ScriptDirectory:
    global _script
    if _script is None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        _script = ScriptDirectory.from_config(config)
    return _script


def head() -> str:
    """The newest revision this version of ledgerflow knows."""
    revision = _scripts().get_current_head()
    assert revision is not None
    return revision


def _context(connection: Connection, **opts: Any) -> MigrationContext:
    return MigrationContext.configure(
        connection, opts={"version_table": VERSION_TABLE, "script": _scripts(), **opts}
    )


class SchemaStatus:
    """What the store holds: no schema, an old one, the current one, or a newer one."""

    def __init__(self, current: str | None, has_tables: bool) -> None:
        self.current = current
        self.has_tables = has_tables

    @property
    def known(self) -> bool:
        """Whether this version of ledgerflow knows the stored revision."""
        if self.current is None:
            return True
        try:
            return _scripts().get_revision(self.current) is not None
        except Exception:  # alembic raises its own errors for an unknown revision
            return False

    @property
    def up_to_date(self) -> bool:
        """Whether the store is at our head revision."""
        return self.current == head()

    def check_known(self, where: str) -> None:
        """Raise SchemaVersionError if a newer ledgerflow wrote the store."""
        if not self.known:
            raise SchemaVersionError(
                f"the store at {where} was written by a newer version of ledgerflow "
                f"(schema revision {self.current!r}; this version knows up to {head()!r}); "
                "upgrade ledgerflow to use it"
            )


def schema_status(connection: Connection) -> SchemaStatus:
    """Read the stored revision (None without a version table) and whether tables exist."""
    inspector = inspect(connection)
    names = set(inspector.get_table_names())
    current = _context(connection).get_current_revision() if VERSION_TABLE in names else None
    has_tables = all(table.name in names for table in TABLES.values())
    return SchemaStatus(current, has_tables)


def upgrade(connection: Connection, where: str, to: str | None = None) -> bool:
    """Migrate to head (or revision ``to``) in the caller's transaction; False if nothing to do.

    A store written by a newer schema raises SchemaVersionError before anything changes.
    """
    status = schema_status(connection)
    status.check_known(where)
    target = head() if to is None else to
    if status.current == target:
        return False
    script = _scripts()

    def steps(revision: Any, _migration: MigrationContext) -> Any:
        return script._upgrade_revs(target, revision)

    context = _context(connection, fn=steps)
    with Operations.context(context):
        context.run_migrations()
    return True
