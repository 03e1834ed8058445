"""What a listing still knows of a record file that does not read: a ``DamagedRow``.

A listing of a file store reads every record file.  One that is not JSON, is
truncated or holds the wrong types must not cost the listing: it is listed as a
``DamagedRow`` holding what could still be read (its uuid from its parent's list
or from the document when that matches the file name, its name, state and times),
placed by its ``created_at`` or, when that is lost too, by the file's modification
time.  The file itself is never touched.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ledgerflow.errors import CorruptRecordError
from ledgerflow.persistence.files import documents
from ledgerflow.persistence.files.documents import ShapeError
from ledgerflow.persistence.listing import DamagedRow
from ledgerflow.persistence.records import Kind

__all__ = ["damaged_row", "salvaged"]

#: The columns a listing filters or orders by, kept when they still read.
_LISTED = ("name", "state", "created_at")


def salvaged(kind: Kind, relpath: str, document: Any) -> dict[str, Any]:
    """What the document of record file ``relpath`` still tells of its record."""
    fields = document.get("row") if isinstance(document, dict) else None
    fields = fields if isinstance(fields, dict) else {}
    stored = fields.get("uuid")
    own = isinstance(stored, str) and documents.record_path(kind, stored) == relpath
    if not own and stored is not None:  # a document naming another record: nothing of this
        return {}
    found = {"uuid": stored} if own else {}
    return {**found, **_readable(fields, (*_LISTED, documents.parent_key(kind)))}


def damaged_row(
    root: Path, relpath: str, error: CorruptRecordError, known: dict[str, Any]
) -> DamagedRow:
    """The row of file ``relpath`` under ``root``: ``known`` and stand-ins for the rest."""
    stand_ins = {"uuid": "", "created_at": _modified(root / relpath)}
    return DamagedRow(error, {**stand_ins, **known})


def _readable(fields: dict[str, Any], columns: tuple[str | None, ...]) -> dict[str, Any]:
    """The ``columns`` of ``fields`` that hold a value of their type."""
    found: dict[str, Any] = {}
    for column in columns:
        if column is None or fields.get(column) is None:
            continue
        try:
            found[column] = documents.check_value(column, fields[column])
        except ShapeError:
            continue
    return found


def _modified(path: Path) -> datetime:
    """When the file was last written (the epoch if even that cannot be read)."""
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError:
        return datetime.fromtimestamp(0, UTC)
