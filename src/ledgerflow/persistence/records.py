"""Conversion between models and the flat rows every backend stores.

A row is a dict of plain values: strings, ints, aware UTC datetimes, and JSON
text for the user-supplied fields (meta, result, checkpoint, failures).  Encoding
happens here, before a backend writes anything, so a value JSON cannot encode
raises SerializationError and leaves the store untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Final, Literal

from ledgerflow import serialization, states
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


#: Counters (revision, attempts) are INTEGER columns in SQL stores: 32-bit signed.
MAX_COUNT: Final = 2**31 - 1
NAMES: Final[dict[Kind, str]] = {"book": "logbook", "flow": "flow detail", "task": "task detail"}


def _is_key(value: object) -> bool:
    return isinstance(value, str) and len(value) <= MAX_KEY_LENGTH


def _is_optional_key(value: object) -> bool:
    return value is None or _is_key(value)


def _is_time(value: object) -> bool:
    return isinstance(value, datetime)


def _is_optional_time(value: object) -> bool:
    return value is None or isinstance(value, datetime)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT


def _is_meta(value: object) -> bool:
    return isinstance(value, dict)


def _is_failure(value: object) -> bool:
    return value is None or isinstance(value, Failure)


def _is_flow_state(value: object) -> bool:
    return isinstance(value, str) and value in states.FLOW_STATES


def _is_task_state(value: object) -> bool:
    return isinstance(value, str) and value in states.TASK_STATES


def _is_try(entry: object) -> bool:
    return (
        isinstance(entry, dict)
        and _is_count(entry.get("attempt"))
        and _is_time(entry.get("started_at"))
        and _is_optional_time(entry.get("finished_at"))
        and entry.get("state") in states.TRY_STATES
        and _is_failure(entry.get("failure"))
    )


def _are_tries(value: object) -> bool:
    return isinstance(value, list) and all(_is_try(entry) for entry in value)


_KEY = (_is_key, f"a string of at most {MAX_KEY_LENGTH} characters")
_OPTIONAL_KEY = (_is_optional_key, f"None or a string of at most {MAX_KEY_LENGTH} characters")
_TIME = (_is_time, "a datetime")
_OPTIONAL_TIME = (_is_optional_time, "None or a datetime")
_COUNT = (_is_count, f"an integer from 0 to {MAX_COUNT}")
_FAILURE = (_is_failure, "None or an lf.Failure")
_COMMON: Final = (("created_at", *_TIME), ("updated_at", *_TIME), ("revision", *_COUNT))
#: (field, test, what the field must be) for every field a store keeps as it is; JSON
#: fields (result, checkpoint, meta's content) are checked by encoding them.
FIELD_RULES: Final[dict[Kind, tuple[tuple[str, Callable[[object], bool], str], ...]]] = {
    "book": (("name", *_KEY), ("meta", _is_meta, "a dict"), *_COMMON),
    "flow": (
        ("name", *_KEY),
        ("type", *_OPTIONAL_KEY),
        ("state", _is_flow_state, "a flow state (lf.states)"),
        ("meta", _is_meta, "a dict"),
        *_COMMON,
    ),
    "task": (
        ("name", *_KEY),
        ("type", *_OPTIONAL_KEY),
        ("version", *_KEY),
        ("state", _is_task_state, "a task state (lf.states)"),
        ("failure", *_FAILURE),
        ("revert_failure", *_FAILURE),
        ("meta", _is_meta, "a dict"),
        ("attempts", *_COUNT),
        (
            "tries",
            _are_tries,
            "a list of dicts with attempt, started_at, finished_at, state (a try state) "
            "and failure",
        ),
        ("started_at", *_OPTIONAL_TIME),
        ("finished_at", *_OPTIONAL_TIME),
        *_COMMON,
    ),
}


def check_fields(kind: Kind, record: LogBook | FlowDetail | TaskDetail) -> None:
    """ValueError naming the record, the field and the value for the first field no store keeps.

    Every backend writes through this check, before anything is written, so a value
    one store would refuse (or mangle) is refused by all of them alike.
    """
    check_uuid(record.uuid, f"{NAMES[kind]} uuid")
    if _FITS[kind](record):  # the common case in one expression; the rules say what is wrong
        return
    for field, test, expected in FIELD_RULES[kind]:
        value = getattr(record, field)
        if not test(value):
            raise ValueError(_bad_field(f"{NAMES[kind]} {record.uuid}", field, value, expected))


def _bad_field(what: str, field: str, value: object, expected: str) -> str:
    if isinstance(value, str) and len(value) > MAX_KEY_LENGTH:
        shown = f"{len(value)} characters long ({value[:40]!r}...)"
    else:
        text = repr(value)
        shown = f"{type(value).__name__} {text if len(text) <= 80 else text[:77] + '...'}"
    return f"{field} of {what} must be {expected}, not {shown}"


def _common_fit(record: LogBook | FlowDetail | TaskDetail) -> bool:
    name, revision = record.name, record.revision
    return (
        type(name) is str
        and len(name) <= MAX_KEY_LENGTH
        and type(revision) is int
        and 0 <= revision <= MAX_COUNT
        and type(record.created_at) is datetime
        and type(record.updated_at) is datetime
        and type(record.meta) is dict
    )


def _book_fits(book: Any) -> bool:
    return _common_fit(book)


def _flow_fits(flow: Any) -> bool:
    kind, state = flow.type, flow.state
    return (
        _common_fit(flow)
        and (kind is None or (type(kind) is str and len(kind) <= MAX_KEY_LENGTH))
        and type(state) is str
        and state in states.FLOW_STATES
    )


def _task_fits(task: TaskDetail) -> bool:
    """The common case of ``check_fields("task", ...)`` in one expression (the hot path)."""
    name, kind, version, attempts, revision = (
        task.name, task.type, task.version, task.attempts, task.revision,
    )  # fmt: skip
    return (
        type(name) is str
        and len(name) <= MAX_KEY_LENGTH
        and (kind is None or (type(kind) is str and len(kind) <= MAX_KEY_LENGTH))
        and type(version) is str
        and len(version) <= MAX_KEY_LENGTH
        and type(task.state) is str
        and task.state in states.TASK_STATES
        and type(attempts) is int
        and 0 <= attempts <= MAX_COUNT
        and type(revision) is int
        and 0 <= revision <= MAX_COUNT
        and type(task.created_at) is datetime
        and type(task.updated_at) is datetime
        and (task.started_at is None or type(task.started_at) is datetime)
        and (task.finished_at is None or type(task.finished_at) is datetime)
        and (task.failure is None or type(task.failure) is Failure)
        and (task.revert_failure is None or type(task.revert_failure) is Failure)
        and type(task.meta) is dict
        and type(task.tries) is list
    )


_FITS: Final[dict[Kind, Callable[[Any], bool]]] = {
    "book": _book_fits,
    "flow": _flow_fits,
    "task": _task_fits,
}


def book_to_row(book: LogBook) -> Row:
    """Encode a book's own fields (not its flows) as a row."""
    check_fields("book", book)
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
    check_fields("flow", flow)
    return {
        "uuid": flow.uuid,
        "book_uuid": book_uuid,
        "name": flow.name,
        "type": flow.type,
        "state": flow.state,
        "meta": _flow_meta(flow),
        "created_at": flow.created_at,
        "updated_at": flow.updated_at,
        "revision": flow.revision,
        "owner": None,
        "fence": flow.fence if type(flow.fence) is int and flow.fence >= 0 else _bad_fence(flow),
        "lease_expires_at": None,
        "request": None,
    }


def _flow_meta(flow: FlowDetail) -> str:
    # lf.load encodes a new flow's meta once, to check its store before anything is
    # written; its first write reuses that text (only the first: meta is edited in place).
    text = flow.encoding_of("meta", flow.meta, once=True)
    if text is not None:
        return text
    return serialization.dumps(flow.meta, f"meta of flow detail {flow.uuid}")


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
    # The engine encoded a result or checkpoint once already to check it: reuse that text.
    text = task.encoding_of(field, value)
    if text is not None:
        return text
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
    if not _task_fits(task):  # hot path: the full check only when the quick one fails
        check_fields("task", task)
    # Checked above: meta is a dict.  The commonest values are spelled out here, so that
    # a no-op task's row costs no call per field.
    result, meta, checkpoint = task.result, task.meta, task.checkpoint
    failure, revert_failure = task.failure, task.revert_failure
    return {
        "uuid": task.uuid,
        "flow_uuid": flow_uuid,
        "name": task.name,
        "type": task.type,
        "version": task.version,
        "state": task.state,
        "result": "null" if result is None else _dump(result, "result", task),
        "failure": None if failure is None else _dump(failure.to_dict(), "failure", task),
        "revert_failure": None
        if revert_failure is None
        else _dump(revert_failure.to_dict(), "revert failure", task),
        "meta": _dump(meta, "meta", task) if meta else "{}",
        "checkpoint": "null" if checkpoint is None else _dump(checkpoint, "checkpoint", task),
        "attempts": task.attempts,
        "tries": _dump_tries(task) if task.tries else None,
        "started_at": task.started_at,
        "finished_at": task.finished_at,
        "created_at": task.created_at,
        "updated_at": task.updated_at,
        "revision": task.revision,
    }


#: One try as stored; filled in directly, because every state change of a task writes it.
_TRY_TEXT: Final = '{"attempt":%d,"started_at":"%s","finished_at":%s,"state":"%s","failure":%s}'
_TRY_STATE_TEXT: Final = {state: state for state in states.TRY_STATES}


class TimeTexts:
    """Text of datetimes already formatted: the same few times are written again and again.

    A task's ``started_at`` is written with each of its state changes, its ``created_at``
    with every one; a datetime is immutable, so its text is looked up by identity (the
    cache holds the object, so its id cannot be reused while the entry lives).
    """

    __slots__ = ("_format", "_texts")

    #: Entries kept before the cache starts over: a task's times recur within a commit or two,
    #: and a small dict stays cheap to fill and to clear.
    LIMIT: Final = 64

    def __init__(self, format_: Callable[[datetime], str]) -> None:
        self._format = format_
        self._texts: dict[int, tuple[datetime, str]] = {}

    def __call__(self, value: datetime) -> str:
        """``format_(value)``, computed once per datetime object."""
        hit = self._texts.get(id(value))
        if hit is not None and hit[0] is value:
            return hit[1]
        text = self._format(value)
        if len(self._texts) >= self.LIMIT:
            self._texts.clear()
        self._texts[id(value)] = (value, text)
        return text


def _try_text(entry: dict[str, Any]) -> str | None:
    """The stored text of one try in its usual shape, else None (the general path)."""
    attempt, started, finished = entry["attempt"], entry["started_at"], entry["finished_at"]
    state, failure = _TRY_STATE_TEXT.get(entry["state"]), entry["failure"]
    if type(attempt) is not int or state is None or type(started) is not datetime:
        return None
    if finished is not None and type(finished) is not datetime:
        return None
    if failure is not None and not isinstance(failure, Failure):
        return None
    return _TRY_TEXT % (
        attempt,
        started.isoformat(),
        "null" if finished is None else f'"{finished.isoformat()}"',
        state,
        "null" if failure is None else serialization.dumps(failure.to_dict(), "a failure"),
    )


def _dump_tries(task: TaskDetail) -> str | None:
    tries = task.tries
    if not tries:
        return None
    try:
        texts = [_try_text(entry) for entry in tries]
        if None not in texts:
            return f"[{','.join(texts)}]"  # type: ignore[arg-type]
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
