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

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy import Connection, inspect

from ledgerflow.errors import SchemaVersionError
from ledgerflow.persistence.sql.tables import TABLES

__all__ = ["VERSION_TABLE", "SchemaStatus", "head", "schema_status", "upgrade"]

VERSION_TABLE: Final = "ledgerflow_alembic_version"
MIGRATIONS_DIR: Final = Path(__file__).with_name("migrations")

if TYPE_CHECKING:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

_script: ScriptDirectory | None = None
_revisions: dict[str, str | None] | None = None
_ASSIGNMENT = re.compile(r"^(revision|down_revision)\s*(?::[^=]*)?=\s*(['\"])(\w+)\2", re.M)


def _scripts() -> ScriptDirectory:
    global _script
    if _script is None:
        from alembic.config import Config
        from alembic.script import ScriptDirectory

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        _script = ScriptDirectory.from_config(config)
    return _script


def revisions() -> dict[str, str | None]:
    """Each revision this version knows -> the one it revises, read from the files' text."""
    global _revisions
    if _revisions is None:
        found: dict[str, str | None] = {}
        for path in sorted((MIGRATIONS_DIR / "versions").glob("*.py")):
            assigned = {m[1]: m[3] for m in _ASSIGNMENT.finditer(path.read_text("utf-8"))}
            if "revision" in assigned:
                found[assigned["revision"]] = assigned.get("down_revision")
        _revisions = found
    return _revisions


def head() -> str:
    """The newest revision this version of ledgerflow knows (the one nothing revises)."""
    known = revisions()
    heads = set(known) - {down for down in known.values() if down is not None}
    assert len(heads) == 1, f"migrations must form one line, found heads {sorted(heads)}"
    return heads.pop()


def _context(connection: Connection, **opts: Any) -> MigrationContext:
    from alembic.runtime.migration import MigrationContext

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
        return self.current is None or self.current in revisions()

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
    current = None
    if VERSION_TABLE in names:
        # What Alembic's get_current_revision() reads, without importing Alembic.
        version = sa.table(VERSION_TABLE, sa.column("version_num"))
        current = connection.execute(sa.select(version.c.version_num)).scalar()
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
    from alembic.operations import Operations

    script = _scripts()

    def steps(revision: Any, _migration: MigrationContext) -> Any:
        return script._upgrade_revs(target, revision)

    context = _context(connection, fn=steps)
    with Operations.context(context):
        context.run_migrations()
    return True
