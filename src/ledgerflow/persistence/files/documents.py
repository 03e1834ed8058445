"""The on-disk layout of a file store and the JSON documents in it.

::

    <dir>/FORMAT                  {"format": "ledgerflow-files", "version": 1}
    <dir>/lock                    flock'd around every transaction
    <dir>/journal.json            present only while (or after a crash during) a
                                  multi-record commit: every document it writes
    <dir>/books/<sha256>.json     one record per file, named by the sha256 of its uuid
    <dir>/flows/<sha256>.json
    <dir>/tasks/<sha256>.json
    <dir>/book-flows/<sha256>.json   a book's flow uuids, in the order they were added
    <dir>/flow-tasks/<sha256>.json   a flow's task uuids, in the order they were added

A uuid never becomes part of a path (it may hold ``/`` or ``..``): file names are
the hex sha256 of the uuid, and the uuid is stored inside the document.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any, Final

from ledgerflow.errors import CorruptRecordError
from ledgerflow.persistence.records import COLUMNS, LATER_COLUMNS, PARENT_KEY, Kind, Row

FORMAT_NAME: Final = "ledgerflow-files"
FORMAT_VERSION: Final = 1
FORMAT_FILE: Final = "FORMAT"
LOCK_FILE: Final = "lock"
JOURNAL_FILE: Final = "journal.json"

RECORD_DIRS: Final[dict[Kind, str]] = {"book": "books", "flow": "flows", "task": "tasks"}
#: Kind of child -> directory of the per-parent documents listing those children.
CHILD_DIRS: Final[dict[Kind, str]] = {"flow": "book-flows", "task": "flow-tasks"}
DATA_DIRS: Final = (*RECORD_DIRS.values(), *CHILD_DIRS.values())
NAMES: Final[dict[Kind, str]] = {"book": "logbook", "flow": "flow detail", "task": "task detail"}

TIME_COLUMNS: Final = frozenset(
    {"created_at", "updated_at", "started_at", "finished_at", "lease_expires_at"}
)
REQUIRED_TIMES: Final = frozenset({"created_at", "updated_at"})
INT_COLUMNS: Final = frozenset({"revision", "attempts", "fence"})
#: Columns a record written before they existed lacks, with the value it reads as
#: (format step: flow records from before leases have never been owned).
ADDED_COLUMNS: Final[dict[Kind, dict[str, Any]]] = {
    "book": {},
    "flow": {"owner": None, "fence": 0, "lease_expires_at": None, "request": None},
    "task": {},
}
REQUIRED_TEXT: Final = frozenset({"uuid", "book_uuid", "flow_uuid"})

_RELPATH = re.compile(r"(?P<dir>[a-z-]+)/[0-9a-f]{64}\.json")

# ensure_ascii escapes lone surrogates too, which a uuid or name may contain.
_encoder = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"))


class ShapeError(ValueError):
    """A document that parsed as JSON but is not what that file should hold."""


def file_name(uuid: str) -> str:
    """The file name of the record (or child list) keyed by ``uuid``."""
    return hashlib.sha256(uuid.encode("utf-8", "surrogatepass")).hexdigest() + ".json"


def record_path(kind: Kind, uuid: str) -> str:
    """Path, relative to the store, of the record ``uuid`` of ``kind``."""
    return f"{RECORD_DIRS[kind]}/{file_name(uuid)}"


def children_path(kind: Kind, parent: str) -> str:
    """Path of the document listing the ``kind`` children of ``parent`` in order."""
    return f"{CHILD_DIRS[kind]}/{file_name(parent)}"


def is_data_path(relpath: object) -> bool:
    """Tell whether ``relpath`` is a path this layout writes (journal entries are checked)."""
    if not isinstance(relpath, str):
        return False
    match = _RELPATH.fullmatch(relpath)
    return match is not None and match["dir"] in DATA_DIRS


def encode(document: Any) -> bytes:
    """Encode a document as compact ASCII JSON."""
    return _encoder.encode(document).encode("ascii")


def decode(data: bytes) -> Any:
    """Parse a document; ShapeError if it is not JSON."""
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ShapeError(f"not valid JSON ({exc})") from exc


def _time_text(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    # Fixed microsecond precision and UTC offset: text round-trips to an equal datetime.
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def row_to_document(kind: Kind, row: Row) -> dict[str, Any]:
    """Encode a row as the document of its record file."""
    fields = {
        column: _time_text(row[column]) if column in TIME_COLUMNS else row[column]
        for column in COLUMNS[kind]
    }
    return {"kind": kind, "row": fields}


def check_value(column: str, value: Any) -> Any:
    """``value`` as column ``column`` holds it (times parsed); ShapeError if it is not one."""
    if column in INT_COLUMNS:
        if type(value) is not int:
            raise ShapeError(f"{column} must be an integer, not {value!r:.40}")
        return value
    if column in TIME_COLUMNS:
        if value is None and column not in REQUIRED_TIMES:
            return None
        if not isinstance(value, str):
            raise ShapeError(f"{column} must be an ISO-8601 time, not {value!r:.40}")
        try:
            moment = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ShapeError(f"{column}: {exc}") from exc
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if value is None and column not in REQUIRED_TEXT:
        return None
    if not isinstance(value, str):
        raise ShapeError(f"{column} must be a string, not {value!r:.40}")
    return value


def document_to_row(kind: Kind, document: Any) -> Row:
    """Decode and check a record document; ShapeError says what is wrong."""
    if not isinstance(document, dict) or document.get("kind") != kind:
        raise ShapeError(f"expected a {NAMES[kind]} document")
    fields = document.get("row")
    if not isinstance(fields, dict):
        raise ShapeError("no 'row' object")
    fields = {**ADDED_COLUMNS[kind], **fields}
    missing = [c for c in COLUMNS[kind] if c not in fields and c not in LATER_COLUMNS]
    if missing:
        raise ShapeError(f"missing {', '.join(missing)}")
    return {column: check_value(column, fields.get(column)) for column in COLUMNS[kind]}


def children_document(kind: Kind, parent: str, children: list[str]) -> dict[str, Any]:
    """The document listing ``parent``'s children of ``kind`` in insertion order."""
    return {"kind": f"{kind}-list", "parent": parent, "children": children}


def document_children(kind: Kind, parent: str, document: Any) -> list[str]:
    """Decode and check a child-list document."""
    if (
        not isinstance(document, dict)
        or document.get("kind") != f"{kind}-list"
        or document.get("parent") != parent
    ):
        raise ShapeError(f"expected the {NAMES[kind]} list of {parent!r}")
    children = document.get("children")
    if not isinstance(children, list) or not all(isinstance(c, str) for c in children):
        raise ShapeError("'children' must be a list of uuids")
    return children


def format_document() -> dict[str, Any]:
    """The FORMAT document this version writes."""
    return {"format": FORMAT_NAME, "version": FORMAT_VERSION}


def format_version(document: Any) -> int:
    """The version recorded in a FORMAT document; ShapeError if it is not one."""
    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        raise ShapeError(f"not a {FORMAT_NAME} FORMAT document")
    version = document.get("version")
    if type(version) is not int or version < 1:
        raise ShapeError(f"bad format version {version!r}")
    return version


def corrupt(what: str, path: object, reason: object) -> CorruptRecordError:
    """The error for a record that cannot be decoded, naming it and its file."""
    return CorruptRecordError(f"{what} is corrupt ({path}): {reason}")


def parent_key(kind: Kind) -> str | None:
    """The column naming a row's parent (None for books)."""
    return PARENT_KEY[kind]
