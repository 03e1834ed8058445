"""The job table (SQLAlchemy Core) and its migrations, kept apart from the logbook schema.

The job table has an Alembic history of its own (``jobs/migrations``) recorded in its
own version table, so the logbook schema and the job schema migrate independently and
a store used without jobs never gets a job table.  ``held_key`` is the job's key while
it is READY or CLAIMED and NULL otherwise: its unique index makes de-duplication the
database's job on every engine (MySQL has no partial indexes).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy import Connection, inspect

from ledgerflow.errors import SchemaVersionError
from ledgerflow.persistence.sql.tables import JSON_TEXT, KEY, NAMING_CONVENTION, UTCDateTime

if TYPE_CHECKING:
    from alembic.runtime.migration import MigrationContext

__all__ = ["JOBS", "VERSION_TABLE", "has_jobs", "upgrade"]

VERSION_TABLE: Final = "ledgerflow_jobs_alembic_version"
HEAD: Final = "j0002"
#: Every revision of the job tables, oldest first: an older one is read as is and migrated
#: by ``upgrade``; one not listed here is newer than this ledgerflow.
REVISIONS: Final = ("j0001", "j0002")
_MIGRATIONS: Final = Path(__file__).with_name("migrations")

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
_SURROGATE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

JOBS = sa.Table(
    "ledgerflow_jobs",
    metadata,
    sa.Column("id", _SURROGATE, primary_key=True, autoincrement=True),
    sa.Column("uuid", KEY, nullable=False, unique=True),
    sa.Column("name", KEY, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("book_uuid", KEY, nullable=False),
    sa.Column("flow_uuid", KEY, nullable=False),
    sa.Column("priority", sa.BigInteger(), nullable=False),
    sa.Column("key", KEY),
    sa.Column("held_key", KEY, unique=True),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("max_attempts", sa.Integer(), nullable=False),
    sa.Column("owner", KEY),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("available_at", UTCDateTime(), nullable=False),
    sa.Column("claim_expires_at", UTCDateTime()),
    sa.Column("last_error", JSON_TEXT),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Index(None, "flow_uuid"),
    sa.Index(None, "book_uuid"),
)

# Claim order (priority down, then posting order): a claim reads the first entry.
sa.Index("ix_ledgerflow_jobs_claim_order", JOBS.c.state, JOBS.c.priority.desc(), JOBS.c.id)


def current(connection: Connection) -> str | None:
    """The job schema's stored revision, or None (no job tables)."""
    if VERSION_TABLE not in inspect(connection).get_table_names():
        return None
    version = sa.table(VERSION_TABLE, sa.column("version_num"))
    return connection.execute(sa.select(version.c.version_num)).scalar()


def has_jobs(connection: Connection, where: str) -> bool:
    """Whether the job tables exist (at our revision or an older one; newer: SchemaVersionError)."""
    stored = current(connection)
    if stored is not None and stored not in REVISIONS:
        raise SchemaVersionError(
            f"the job tables at {where} are at revision {stored!r}, this version of "
            f"ledgerflow uses {HEAD!r}"
        )
    return stored is not None


def upgrade(connection: Connection, where: str) -> None:
    """Create or migrate the job tables in the caller's transaction; idempotent."""
    if has_jobs(connection, where) and current(connection) == HEAD:
        return
    from alembic.config import Config
    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    script = ScriptDirectory.from_config(config)

    def steps(revision: Any, _context: MigrationContext) -> Any:
        return script._upgrade_revs(HEAD, revision)

    context = MigrationContext.configure(
        connection, opts={"version_table": VERSION_TABLE, "script": script, "fn": steps}
    )
    with Operations.context(context):
        context.run_migrations()
