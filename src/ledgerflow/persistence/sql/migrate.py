"""Run the Alembic migrations programmatically, on the caller's connection.

No ``alembic.ini`` and no ``env.py``: the revisions are read from ``migrations/versions``
and applied through a ``MigrationContext`` bound to the connection we are given, inside
the transaction the caller opened.  Our version table has a name of its own, so a
database shared with an application that uses Alembic too keeps both histories apart.

Reading commands only check the schema: that needs the stored revision and the list of
revisions, both read here without importing Alembic (whose import alone took longer
than a whole ``ledgerflow books``); Alembic is imported only to migrate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import Connection, inspect

from ledgerflow.persistence.sql.common import (
    MIGRATIONS_DIR,
    VERSION_TABLE,
    SchemaStatus,
    head,
    revisions,
)

__all__ = [
    "MIGRATIONS_DIR",
    "VERSION_TABLE",
    "SchemaStatus",
    "head",
    "revisions",
    "schema_status",
    "upgrade",
]

if TYPE_CHECKING:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

_script: ScriptDirectory | None = None


def _scripts() -> ScriptDirectory:
    global _script
    if _script is None:
        from alembic.config import Config
        from alembic.script import ScriptDirectory

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        _script = ScriptDirectory.from_config(config)
    return _script


def _context(connection: Connection, **opts: Any) -> MigrationContext:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(
        connection, opts={"version_table": VERSION_TABLE, "script": _scripts(), **opts}
    )


def schema_status(connection: Connection) -> SchemaStatus:
    """Read the stored revision (None without a version table) and whether tables exist."""
    inspector = inspect(connection)
    names = set(inspector.get_table_names())
    current = None
    if VERSION_TABLE in names:
        # What Alembic's get_current_revision() reads, without importing Alembic.
        version = sa.table(VERSION_TABLE, sa.column("version_num"))
        current = connection.execute(sa.select(version.c.version_num)).scalar()
    return SchemaStatus.of(current, names)


def upgrade(connection: Connection, where: str, to: str | None = None) -> bool:
    """Migrate to head (or revision ``to``) in the caller's transaction; False if nothing to do.

    A store written by a newer schema raises SchemaVersionError before anything changes.
    """
    status = schema_status(connection)
    status.check_known(where)
    target = head() if to is None else to
    if status.current == target:
        return False
    from alembic.operations import Operations

    script = _scripts()

    def steps(revision: Any, _migration: MigrationContext) -> Any:
        return script._upgrade_revs(target, revision)

    context = _context(connection, fn=steps)
    with Operations.context(context):
        context.run_migrations()
    return True
