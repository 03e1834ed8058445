"""Conversion between models and the flat rows every backend stores.

A row is a dict of plain values: strings, ints, aware UTC datetimes, and JSON
text for the user-supplied fields (meta, result, checkpoint, failures).  Encoding
happens here, before a backend writes anything, so a value JSON cannot encode
raises SerializationError and leaves the store untouched.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from ledgerflow import serialization
from ledgerflow.errors import CorruptRecordError, InvalidUUIDError
from ledgerflow.models import (
    Failure,
    FlowDetail,
    LogBook,
    TaskDetail,
    tries_from_json,
    tries_to_json,
)
from ledgerflow.serialization import dumps, loads

Kind = Literal["book", "flow", "task"]
Row = dict[str, Any]

MAX_UUID_LENGTH: Final = 255
#: Names, types and versions are VARCHAR(255) in SQL stores; every backend keeps the limit.
MAX_KEY_LENGTH: Final = 255

#: Columns of each kind of row, in storage order; the parent key comes second.
BOOK_COLUMNS: Final = ("uuid", "name", "meta", "created_at", "updated_at", "revision")
FLOW_COLUMNS: Final = (
    "uuid", "book_uuid", "name", "type", "state", "meta",
    "created_at", "updated_at", "revision",
    "owner", "fence", "lease_expires_at", "request",
)  # fmt: skip
#: Flow columns only taking, renewing and letting go of a flow write (and a suspend or
#: cancel request): inserts start them empty (fence as given), updates keep them.
OWNERSHIP_COLUMNS: Final = ("owner", "fence", "lease_expires_at", "request")
TASK_COLUMNS: Final = (
    "uuid", "flow_uuid", "name", "type", "version", "state", "result", "failure",
    "revert_failure", "meta", "checkpoint", "attempts", "tries", "started_at", "finished_at",
    "created_at", "updated_at", "revision",
)  # fmt: skip
COLUMNS: Final[dict[Kind, tuple[str, ...]]] = {
    "book": BOOK_COLUMNS,
    "flow": FLOW_COLUMNS,
    "task": TASK_COLUMNS,
}
PARENT_KEY: Final[dict[Kind, str | None]] = {"book": None, "flow": "book_uuid", "task": "flow_uuid"}
#: Columns that hold JSON text.
JSON_COLUMNS: Final = frozenset(
    {"meta", "result", "checkpoint", "failure", "revert_failure", "tries"}
)
#: Columns added after the first release: a record written before holds no value (None).
LATER_COLUMNS: Final = frozenset({"tries"})


def check_uuid(value: object, what: str = "uuid") -> str:
    """Return ``value`` if it is a usable uuid, else raise InvalidUUIDError naming it."""
    if not isinstance(value, str):
        raise InvalidUUIDError(f"{what} must be a string, not {type(value).__name__}: {value!r}")
    if not value or len(value) > MAX_UUID_LENGTH or "\x00" in value or value != value.strip():
        raise InvalidUUIDError(
            f"malformed {what} {value[:80]!r}: expected 1-{MAX_UUID_LENGTH} characters "
            "without surrounding whitespace or NUL"
        )
    return value


def _fits(value: object, optional: bool = False) -> bool:
    return (type(value) is str and len(value) <= MAX_KEY_LENGTH) or (optional and value is None)


def _refuse_bad_keys(what: str, *fields: tuple[str, object, bool]) -> None:
    """ValueError for the first (field, value, optional) that no store can keep as it is."""
    for field, value, optional in fields:
        if _fits(value, optional):
            continue
        if isinstance(value, str):
            raise ValueError(
                f"{field} of {what} is {len(value)} characters long ({value[:40]!r}...); "
                f"stores keep at most {MAX_KEY_LENGTH}"
            )
        expected = "a string" + (" or None" if optional else "")
        raise ValueError(f"{field} of {what} must be {expected}, not {type(value).__name__}")


def book_to_row(book: LogBook) -> Row:
    """Encode a book's own fields (not its flows) as a row."""
    check_uuid(book.uuid, "logbook uuid")
    _refuse_bad_keys(f"logbook {book.uuid}", ("name", book.name, False))
    return {
        "uuid": book.uuid,
        "name": book.name,
        "meta": serialization.dumps(book.meta, f"meta of logbook {book.uuid}"),
        "created_at": book.created_at,
        "updated_at": book.updated_at,
        "revision": book.revision,
    }


def flow_to_row(flow: FlowDetail, book_uuid: str | None) -> Row:
    """Encode a flow detail's own fields (not its tasks) as a row."""
    check_uuid(flow.uuid, "flow detail uuid")
    _refuse_bad_keys(
        f"flow detail {flow.uuid}", ("name", flow.name, False), ("type", flow.type, True)
    )
    return {
        "uuid": flow.uuid,
        "book_uuid": book_uuid,
        "name": flow.name,
        "type": flow.type,
        "state": flow.state,
        "meta": serialization.dumps(flow.meta, f"meta of flow detail {flow.uuid}"),
        "created_at": flow.created_at,
        "updated_at": flow.updated_at,
        "revision": flow.revision,
        "owner": None,
        "fence": flow.fence if type(flow.fence) is int and flow.fence >= 0 else _bad_fence(flow),
        "lease_expires_at": None,
        "request": None,
    }


def _bad_fence(flow: FlowDetail) -> int:
    raise ValueError(
        f"fence of flow detail {flow.uuid} must be a non-negative integer, not {flow.fence!r}"
    )


def _dump(value: Any, field: str, task: TaskDetail) -> str:
    # The commonest values skip the encoder; the error message is only built on error.
    if value is None:
        return "null"
    if type(value) is dict and not value:
        return "{}"
    return dumps(value, lambda: f"{field} of task detail {task.name!r} ({task.uuid})")


def _load(text: str | None, field: str, uuid: str) -> Any:
    if text is None or text == "null":
        return None
    if text == "{}":
        return {}
    return loads(text, lambda: f"{field} of task detail {uuid}")


def task_to_row(task: TaskDetail, flow_uuid: str | None) -> Row:
    """Encode a task detail as a row (the engine's hot path: keep it lean)."""
    check_uuid(task.uuid, "task detail uuid")
    if not (_fits(task.name) and _fits(task.type, True) and _fits(task.version)):  # hot path
        _refuse_bad_keys(
            f"task detail {task.uuid}",
            ("name", task.name, False),
            ("type", task.type, True),
            ("version", task.version, False),
        )
    failure, revert_failure = task.failure, task.revert_failure
    return {
        "uuid": task.uuid,
        "flow_uuid": flow_uuid,
        "name": task.name,
        "type": task.type,
        "version": task.version,
        "state": task.state,
        "result": _dump(task.result, "result", task),
        "failure": None if failure is None else _dump(failure.to_dict(), "failure", task),
        "revert_failure": None
        if revert_failure is None
        else _dump(revert_failure.to_dict(), "revert failure", task),
        "meta": _dump(task.meta, "meta", task),
        "checkpoint": _dump(task.checkpoint, "checkpoint", task),
        "attempts": task.attempts,
        "tries": _dump_tries(task),
        "started_at": task.started_at,
        "finished_at": task.finished_at,
        "created_at": task.created_at,
        "updated_at": task.updated_at,
        "revision": task.revision,
    }


def _dump_tries(task: TaskDetail) -> str | None:
    tries = task.tries
    if not tries:
        return None
    try:
        data = tries_to_json(tries)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(
            f"tries of task detail {task.name!r} ({task.uuid}) must be a list of dicts with "
            f"attempt, started_at, finished_at, state and failure, not {tries!r:.200}"
        ) from exc
    return dumps(data, lambda: f"tries of task detail {task.name!r} ({task.uuid})")


def _load_tries(text: str | None, uuid: str) -> list[dict[str, Any]]:
    if text is None:  # written before tries were recorded, or never started
        return []
    try:
        return tries_from_json(loads(text, lambda: f"tries of task detail {uuid}"))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, CorruptRecordError):
            raise
        raise CorruptRecordError(f"tries of task detail {uuid} are corrupt: {exc!r}") from exc


def _load_failure(text: str | None, what: serialization.What) -> Failure | None:
    if text is None:
        return None
    data = loads(text, what)
    if data is None:
        return None
    try:
        return Failure.from_dict(data)
    except (KeyError, TypeError) as exc:
        name = what if isinstance(what, str) else what()
        raise CorruptRecordError(f"{name} is corrupt: {exc!r}") from exc


def row_to_book(row: Row) -> LogBook:
    """Decode a book row (without flows)."""
    what = f"logbook {row['uuid']}"
    return LogBook(
        name=row["name"],
        uuid=row["uuid"],
        meta=serialization.loads(row["meta"], f"meta of {what}") or {},
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        revision=row["revision"],
    )


def row_to_flow(row: Row) -> FlowDetail:
    """Decode a flow row (without tasks)."""
    what = f"flow detail {row['uuid']}"
    return FlowDetail(
        name=row["name"],
        uuid=row["uuid"],
        type=row["type"],
        state=row["state"],
        meta=serialization.loads(row["meta"], f"meta of {what}") or {},
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        revision=row["revision"],
        owner=row["owner"],
        fence=row["fence"],
        lease_expires_at=row["lease_expires_at"],
    )


def row_to_task(row: Row) -> TaskDetail:
    """Decode a task row (loading 10,000 of them is a hot path: no __init__, lazy messages)."""
    uuid = row["uuid"]
    task = TaskDetail.__new__(TaskDetail)
    task.__dict__.update(
        name=row["name"],
        uuid=uuid,
        type=row["type"],
        version=row["version"],
        state=row["state"],
        result=_load(row["result"], "result", uuid),
        failure=_load_failure(row["failure"], lambda: f"failure of task detail {uuid}"),
        revert_failure=_load_failure(
            row["revert_failure"], lambda: f"revert failure of task detail {uuid}"
        ),
        meta=_load(row["meta"], "meta", uuid) or {},
        checkpoint=_load(row["checkpoint"], "checkpoint", uuid),
        attempts=row["attempts"],
        tries=_load_tries(row["tries"], uuid),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        revision=row["revision"],
    )
    return task
