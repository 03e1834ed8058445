"""What the SQLAlchemy backend shares with the stdlib-only SQLite reader (``reader``).

No SQLAlchemy here, and nothing that imports it: the table names, the schema
revisions (read from the migration files' text), SQLite's time text, and the words
for what sqlite3 reports.  ``ledgerflow books`` on SQLite reads through ``reader``
without importing SQLAlchemy, whose import alone took most of its start-up budget.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Protocol

from ledgerflow.errors import CorruptRecordError, CorruptStoreError, SchemaVersionError
from ledgerflow.persistence.records import Kind

__all__ = [
    "MIGRATIONS_DIR",
    "RECORD_NAMES",
    "TABLE_NAMES",
    "VERSION_TABLE",
    "SchemaStatus",
    "bad_time",
    "corrupt_store",
    "driver_codes",
    "first_line",
    "head",
    "is_corrupt",
    "load_errors",
    "revisions",
    "sqlite_time",
    "sqlite_time_text",
    "sqlite_words",
    "unloadable",
]

#: The table of each kind of record.
TABLE_NAMES: Final[dict[Kind, str]] = {
    "book": "ledgerflow_logbooks",
    "flow": "ledgerflow_flow_details",
    "task": "ledgerflow_task_details",
}
#: What messages call a record of each kind.
RECORD_NAMES: Final[dict[Kind, str]] = {
    "book": "logbook",
    "flow": "flow detail",
    "task": "task detail",
}
#: Our own Alembic version table (a database shared with an app keeps both histories).
VERSION_TABLE: Final = "ledgerflow_alembic_version"
MIGRATIONS_DIR: Final = Path(__file__).with_name("migrations")

_revisions: dict[str, str | None] | None = None
_ASSIGNMENT = re.compile(r"^(revision|down_revision)\s*(?::[^=]*)?=\s*(['\"])(\w+)\2", re.M)


# ---- schema revisions -------------------------------------------------------------------
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


class SchemaStatus:
    """What the store holds: no schema, an old one, the current one, or a newer one."""

    def __init__(self, current: str | None, has_tables: bool) -> None:
        self.current = current
        self.has_tables = has_tables

    @classmethod
    def of(cls, current: str | None, table_names: set[str]) -> SchemaStatus:
        """The status of a store at revision ``current`` holding these tables."""
        return cls(current, all(name in table_names for name in TABLE_NAMES.values()))

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

    def outdated(self) -> str | None:
        """Why every statement would fail on an older known schema (it lacks columns), or None."""
        if self.current is not None and self.known and not self.up_to_date:
            return f"is at schema revision {self.current!r}, not {head()!r}: it needs upgrade"
        return None


# ---- SQLite's time text -----------------------------------------------------------------
def sqlite_time_text(value: datetime | None) -> str | None:
    """What SQLAlchemy's SQLite DATETIME stores for an aware datetime, in a quarter of the time."""
    if value is None:
        return None
    if value.tzinfo is UTC:  # the common case: drop the "+00:00" the aware form ends with
        return value.isoformat(" ", "microseconds")[:-6]
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(" ", "microseconds")


def sqlite_time(value: str) -> datetime:
    """SQLite keeps ``YYYY-MM-DD HH:MM:SS.ffffff`` in UTC: parse it in C, offset included."""
    parsed = datetime.fromisoformat(value + "+00:00")
    return parsed if parsed.tzinfo is UTC else parsed.replace(tzinfo=UTC)


def load_errors(dialect: object) -> tuple[type[BaseException], ...]:
    """What ``dialect``'s driver raises, unwrapped, for a stored value it cannot load.

    PostgreSQL's timestamptz admits 'infinity', which no datetime holds: psycopg
    refuses to load it (DataError) while the rows are read off the cursor.
    """
    dbapi = getattr(dialect, "loaded_dbapi", None) or getattr(dialect, "dbapi", None)
    found = getattr(dbapi, "DataError", None)
    return (found,) if isinstance(found, type) and issubclass(found, BaseException) else ()


def unloadable(what: str, uuids: Sequence[str], error: BaseException) -> CorruptRecordError:
    """The error of rows holding a value the driver cannot load (one uuid: that record)."""
    whose = f"{what} {uuids[0]} is" if len(uuids) == 1 else f"a {what} row is"
    return CorruptRecordError(f"{whose} corrupt: its driver cannot load it ({first_line(error)})")


def bad_time(what: str, uuid: object, column: str, value: object) -> CorruptRecordError:
    """The error of a record whose time column holds something that is not a time."""
    return CorruptRecordError(f"{what} {uuid} is corrupt: {column} is {value!r:.80}, not a time")


# ---- what sqlite3 (or any driver) reported ----------------------------------------------
class Where(Protocol):
    """The parts of a store's address the messages name."""

    @property
    def where(self) -> str:
        """Host and port, or the file, for messages."""

    @property
    def busy_timeout_ms(self) -> int:
        """SQLite: how long a statement waits for a lock."""


def driver_error(error: BaseException) -> BaseException:
    """The driver's own exception (psycopg's, PyMySQL's, sqlite3's) behind SQLAlchemy's wrapper."""
    orig = getattr(error, "orig", None)
    return orig if isinstance(orig, BaseException) else error


def first_line(error: BaseException) -> str:
    """The first line of the driver's message, at most 300 characters."""
    text = str(getattr(error, "orig", None) or error).strip().splitlines()
    line = text[0] if text else type(error).__name__
    return line if len(line) <= 300 else line[:300] + "..."


def driver_codes(error: BaseException) -> set[object]:
    """The codes a driver attaches to an error: sqlite3's name, a SQLSTATE, MySQL's number."""
    orig = driver_error(error)
    args = getattr(orig, "args", ())
    return {
        getattr(orig, "sqlite_errorname", None),
        getattr(orig, "sqlstate", None),
        args[0] if args and isinstance(args[0], int) else None,
    } - {None}


def is_corrupt(error: BaseException) -> bool:
    """Whether SQLite reported the file malformed (SQLITE_CORRUPT) or not a database."""
    return any(
        str(code).startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) for code in driver_codes(error)
    )


def corrupt_store(where: str, error: BaseException) -> CorruptStoreError:
    """The error of a SQLite file that SQLite reported malformed."""
    return CorruptStoreError(
        f"the SQLite {where} is malformed ({first_line(error)}); nothing more is "
        "written to it: run `ledgerflow check` on it"
    )


def sqlite_words(address: Where, error: BaseException) -> str | None:
    """A full disk or a lock held too long, said so; None for anything else."""
    codes = driver_codes(error)
    name = next((str(code) for code in codes if str(code).startswith("SQLITE_")), "")
    where = address.where
    if name.startswith("SQLITE_FULL") or errno.ENOSPC in codes:
        return f"the disk holding the SQLite {where} is full; free some space and try again"
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return (
            f"the SQLite {where} is locked by another process or connection (waited "
            f"{address.busy_timeout_ms / 1000:g} s; set busy_timeout=MS in the URI to wait longer)"
        )
    return None
