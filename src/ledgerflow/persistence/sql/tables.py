"""The SQL schema: one table per kind of record, as SQLAlchemy Core ``Table``s.

Columns are ``records.COLUMNS`` plus an integer surrogate key ``id`` (insertion
order: details come back in the order they were added on every engine) and a
``format`` column naming the serialization of the JSON-text columns, so another
format can be added without guessing what a row holds.

The migrations in ``migrations/versions`` create exactly this schema; a test
compares the two with Alembic's ``compare_metadata`` on every engine.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeEngine

from ledgerflow.persistence.records import Kind
from ledgerflow.persistence.sql.common import TABLE_NAMES

__all__ = ["BOOKS", "FLOWS", "TABLES", "TASKS", "metadata"]

#: Names of indexes and constraints, so migrations and ``tables`` agree on every engine.
NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

#: MySQL/MariaDB compare strings case-insensitively by default; uuids and names
#: are exact, so their columns use the binary collation there.
_MYSQL_KEY = mysql.VARCHAR(255, charset="utf8mb4", collation="utf8mb4_bin")
KEY = String(255).with_variant(_MYSQL_KEY, "mysql", "mariadb")
#: User values (results, checkpoints...) up to 16 MB and beyond: MySQL's TEXT stops at 64 KB.
JSON_TEXT = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
#: The surrogate key: SQLite autoincrements only an INTEGER PRIMARY KEY (the rowid).
SURROGATE = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, to the microsecond, on every engine.

    PostgreSQL keeps the offset (TIMESTAMPTZ); SQLite and MySQL store naive UTC
    (MySQL needs DATETIME(6) for microseconds) and get UTC reattached on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """DATETIME(6) on MySQL/MariaDB, the plain type elsewhere."""
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert to UTC; drop the offset where the engine cannot keep it."""
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return an aware UTC datetime; ValueError for what is not one (a row that is corrupt).

        PyMySQL hands a DATETIME it cannot convert (MariaDB's zero date) back as text.
        """
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise ValueError(f"not a time: {value!r:.80}")
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _timestamps() -> list[Column[Any]]:
    return [
        Column("created_at", UTCDateTime(), nullable=False),
        Column("updated_at", UTCDateTime(), nullable=False),
    ]


def _bookkeeping() -> list[Column[Any]]:
    return [
        Column("revision", Integer, nullable=False),
        Column("format", String(16), nullable=False, server_default=FORMAT_DEFAULT),
    ]


FORMAT_DEFAULT: Final = "json"

BOOKS = Table(
    TABLE_NAMES["book"],
    metadata,
    Column("id", SURROGATE, primary_key=True, autoincrement=True),
    Column("uuid", KEY, nullable=False, unique=True),
    Column("name", KEY, nullable=False),
    Column("meta", JSON_TEXT),
    *_timestamps(),
    *_bookkeeping(),
    Index(None, "name"),
    Index(None, "created_at", "uuid"),
    Index(None, "updated_at"),
)

FLOWS = Table(
    TABLE_NAMES["flow"],
    metadata,
    Column("id", SURROGATE, primary_key=True, autoincrement=True),
    Column("uuid", KEY, nullable=False, unique=True),
    Column(
        "book_uuid",
        KEY,
        ForeignKey(BOOKS.c.uuid, ondelete="CASCADE"),
        nullable=False,
    ),
    Column("name", KEY, nullable=False),
    Column("type", KEY),
    Column("state", KEY, nullable=False),
    Column("meta", JSON_TEXT),
    *_timestamps(),
    *_bookkeeping(),
    # Ownership of a running flow (migration 0004): written only by take/renew/release.
    Column("owner", KEY),
    Column("fence", Integer, nullable=False, server_default="0"),
    Column("lease_expires_at", UTCDateTime()),
    Column("request", String(16)),
    Index(None, "book_uuid", "id"),
    Index(None, "state", "book_uuid"),
    Index(None, "name"),
    Index(None, "updated_at"),
    # The keyset order of flow listings (migration 0005): page 2,000 costs what page 1 does.
    Index(None, "created_at", "uuid"),
)

TASKS = Table(
    TABLE_NAMES["task"],
    metadata,
    Column("id", SURROGATE, primary_key=True, autoincrement=True),
    Column("uuid", KEY, nullable=False, unique=True),
    Column(
        "flow_uuid",
        KEY,
        ForeignKey(FLOWS.c.uuid, ondelete="CASCADE"),
        nullable=False,
    ),
    Column("name", KEY, nullable=False),
    Column("type", KEY),
    Column("version", KEY, nullable=False),
    Column("state", KEY, nullable=False),
    Column("result", JSON_TEXT),
    Column("failure", JSON_TEXT),
    Column("revert_failure", JSON_TEXT),
    Column("meta", JSON_TEXT),
    Column("checkpoint", JSON_TEXT),
    Column("attempts", Integer, nullable=False),
    # One JSON entry per try (migration 0003); NULL in rows written before it.
    Column("tries", JSON_TEXT),
    Column("started_at", UTCDateTime()),
    Column("finished_at", UTCDateTime()),
    *_timestamps(),
    *_bookkeeping(),
    # Only the index reads use: tasks are written on every state change, and each index
    # on a column an UPDATE sets is one more page per commit (migration 0002).
    Index(None, "flow_uuid", "id"),
)

TABLES: Final[dict[Kind, Table]] = {"book": BOOKS, "flow": FLOWS, "task": TASKS}
