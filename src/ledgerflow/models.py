"""The logbook models: plain data, no storage and no state checks.

A ``LogBook`` holds ``FlowDetail``s, which hold ``TaskDetail``s; a task's error is a
``Failure``.  ``to_dict``/``from_dict`` round-trip exactly and produce JSON-safe
dicts whose keys are the attribute names.  Timestamps are timezone-aware UTC
``datetime``s, ISO-8601 strings in ``to_dict``.
"""

from __future__ import annotations

import copy
import dataclasses
import traceback
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import KW_ONLY, dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

from ledgerflow import serialization, states

__all__ = [
    "Failure",
    "FlowDetail",
    "LogBook",
    "TaskDetail",
    "close_try",
    "new_try",
    "new_uuid",
    "tries_from_json",
    "tries_to_json",
    "utcnow",
]


def new_uuid() -> str:
    """Return a new random UUID4 string."""
    return str(uuidlib.uuid4())


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def _time_to_json(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _time_from_json(value: str | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _message(exc: BaseException) -> str:
    # A broken __str__ must not stop the failure from being recorded.
    try:
        return str(exc)
    except Exception as error:
        return f"<str() of {type(exc).__name__} failed: {type(error).__name__}>"


@dataclass(frozen=True)
class Failure:
    """An exception captured as data: types, message, traceback and chain of causes."""

    exc_type_names: tuple[str, ...]
    message: str
    traceback_str: str = field(default="", repr=False)
    cause: Failure | None = None

    _MAX_CAUSES: ClassVar[int] = 32

    def __post_init__(self) -> None:
        # A list given by the caller becomes a tuple, so from_dict(to_dict()) == self.
        names: Any = self.exc_type_names
        if not isinstance(names, tuple):
            object.__setattr__(self, "exc_type_names", tuple(names))

    @classmethod
    def from_exception(cls, exc: BaseException) -> Failure:
        """Capture ``exc`` and the chain of exceptions that caused it."""
        return cls._capture(exc, set())

    @classmethod
    def _capture(cls, exc: BaseException, seen: set[int]) -> Failure:
        seen.add(id(exc))
        cause_exc = exc.__cause__
        if cause_exc is None and not exc.__suppress_context__:
            cause_exc = exc.__context__
        cause = None
        if cause_exc is not None and id(cause_exc) not in seen and len(seen) < cls._MAX_CAUSES:
            cause = cls._capture(cause_exc, seen)
        names = tuple(_qualified_name(c) for c in type(exc).__mro__ if c is not object)
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, chain=False))
        return cls(exc_type_names=names, message=_message(exc), traceback_str=tb, cause=cause)

    @property
    def exc_type_name(self) -> str:
        """The most derived exception type's qualified name."""
        return self.exc_type_names[0] if self.exc_type_names else "Exception"

    def matches(self, exc_type: type[BaseException] | str) -> bool:
        """Tell whether the failure is of ``exc_type`` (a class or a qualified name)."""
        name = exc_type if isinstance(exc_type, str) else _qualified_name(exc_type)
        return name in self.exc_type_names

    def causes(self) -> Iterator[Failure]:
        """Iterate over the chain of causes, nearest first."""
        current = self.cause
        while current is not None:
            yield current
            current = current.cause

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict (causes nested under ``cause``)."""
        return {
            "exc_type_names": list(self.exc_type_names),
            "message": self.message,
            "traceback_str": self.traceback_str,
            "cause": None if self.cause is None else self.cause.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Failure:
        """Rebuild a Failure from ``to_dict`` output; never imports a class."""
        cause = data.get("cause")
        return cls(
            exc_type_names=tuple(data["exc_type_names"]),
            message=data["message"],
            traceback_str=data.get("traceback_str", ""),
            cause=None if cause is None else cls.from_dict(cause),
        )

    def __str__(self) -> str:
        short = self.exc_type_name.rpartition(".")[2]
        return f"{short}: {self.message}" if self.message else short


def new_try(attempt: int, started_at: datetime) -> dict[str, Any]:
    """A ``td.tries`` entry for a try that just started (RUNNING)."""
    return {
        "attempt": attempt,
        "started_at": started_at,
        "finished_at": None,
        "state": states.RUNNING,
        "failure": None,
    }


def close_try(
    tries: list[dict[str, Any]], state: str, finished_at: datetime, failure: Failure | None = None
) -> list[dict[str, Any]]:
    """``tries`` with its last entry, if still RUNNING, ended in ``state`` (a new list)."""
    if state not in states.TRY_STATES or state == states.RUNNING:
        raise ValueError(f"a try ends SUCCESS, FAILURE or INTERRUPTED, not {state!r}")
    if not tries or tries[-1].get("state") != states.RUNNING:
        return tries
    last = {**tries[-1], "finished_at": finished_at, "state": state, "failure": failure}
    return [*tries[:-1], last]


def tries_to_json(tries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The JSON-safe form of ``td.tries`` (times as ISO-8601 text, failures as dicts)."""
    out = []
    for entry in tries:
        failure = entry.get("failure")
        out.append(
            {
                "attempt": entry["attempt"],
                "started_at": _time_to_json(entry.get("started_at")),
                "finished_at": _time_to_json(entry.get("finished_at")),
                "state": entry["state"],
                "failure": None if failure is None else failure.to_dict(),
            }
        )
    return out


def tries_from_json(data: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """``td.tries`` from its JSON-safe form (None, as older records hold, is no tries)."""
    out = []
    for entry in data or ():
        failure = entry.get("failure")
        out.append(
            {
                "attempt": entry["attempt"],
                "started_at": _time_from_json(entry.get("started_at")),
                "finished_at": _time_from_json(entry.get("finished_at")),
                "state": entry["state"],
                "failure": None if failure is None else Failure.from_dict(failure),
            }
        )
    return out


# How to_dict/from_dict treat a field; fields not named here are copied as they are.
_TIME_FIELDS = frozenset(
    {"created_at", "updated_at", "started_at", "finished_at", "lease_expires_at"}
)
_FAILURE_FIELDS = frozenset({"failure", "revert_failure"})
_MUTABLE_FIELDS = frozenset({"meta", "result", "checkpoint", "tries"})


class _Record:
    """Shared to_dict/from_dict/merge for the three record models."""

    _CHILDREN: ClassVar[str | None] = None  # name of the nested details in to_dict

    def remember_encoding(self, field_name: str, value: Any, text: str) -> None:
        """Note that ``value`` (in ``field_name``) encodes as ``text``: the next write reuses it.

        Not a field: it is neither compared nor stored, and it only applies while the
        field still holds that very object.
        """
        self.__dict__.setdefault("_encoded", {})[field_name] = (value, text)

    def encoding_of(self, field_name: str, value: Any, *, once: bool = False) -> str | None:
        """The text remembered for ``value`` in ``field_name``, else None (``once``: forget it)."""
        remembered = self.__dict__.get("_encoded")
        if not remembered:
            return None
        hit = remembered.pop(field_name, None) if once else remembered.get(field_name)
        return hit[1] if hit is not None and hit[0] is value else None

    def _field_names(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self) if not f.name.startswith("_")]  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict keyed by attribute name, nested details included."""
        out: dict[str, Any] = {}
        for name in self._field_names():
            value = getattr(self, name)
            if name in _TIME_FIELDS:
                value = _time_to_json(value)
            elif name in _FAILURE_FIELDS:
                value = None if value is None else value.to_dict()
            elif name == "tries":
                value = tries_to_json(value)
            elif name in _MUTABLE_FIELDS:  # the tagged JSON form, sharing nothing
                value = copy.deepcopy(serialization.to_json(value, f"{name} of {self!r:.80}"))
            out[name] = value
        if self._CHILDREN is not None:
            out[self._CHILDREN] = [child.to_dict() for child in self._children().values()]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Rebuild a record (with its nested details) from ``to_dict`` output."""
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name.startswith("_") or f.name not in data:
                continue
            value = data[f.name]
            if f.name in _TIME_FIELDS:
                value = _time_from_json(value)
            elif f.name in _FAILURE_FIELDS:
                value = None if value is None else Failure.from_dict(value)
            elif f.name == "tries":
                value = tries_from_json(value)
            elif f.name in _MUTABLE_FIELDS:
                value = serialization.from_json(value, f"{f.name} of a {cls.__name__}")
            kwargs[f.name] = value
        record = cls(**kwargs)
        if cls._CHILDREN is not None:
            child_cls = _CHILD_CLASSES[cls]
            for child in data.get(cls._CHILDREN, ()):
                record._children()[child["uuid"]] = child_cls.from_dict(child)
        return record

    def _children(self) -> dict[str, Any]:
        raise TypeError(f"{type(self).__name__} has no nested details")

    def copy(self) -> Self:
        """Return an independent deep copy."""
        return copy.deepcopy(self)

    def merge(self, other: Self, deep: bool = True) -> Self:
        """Copy ``other``'s fields into this record; with ``deep``, merge nested details too."""
        if other.uuid != self.uuid:  # type: ignore[attr-defined]
            raise ValueError(
                f"cannot merge record {other.uuid!r} into {self.uuid!r}"  # type: ignore[attr-defined]
            )
        for name in self._field_names():
            value = getattr(other, name)
            if name in _MUTABLE_FIELDS:
                value = copy.deepcopy(value)
            setattr(self, name, value)
        if deep and self._CHILDREN is not None:
            mine = self._children()
            for key, child in other._children().items():
                if key in mine:
                    mine[key].merge(child, deep=True)
                else:
                    mine[key] = child.copy()
        return self


@dataclass
class TaskDetail(_Record):
    """One run of one task: state, result or failure, attempts, tries, timing, checkpoint.

    ``attempts`` counts the tries started; ``tries`` has one entry per start, oldest
    first (``new_try``): for tasks started by this version ``attempts == len(tries)``.
    """

    name: str
    uuid: str = None  # type: ignore[assignment]  # None means "make a new one"
    type: str | None = None
    version: str = "1.0"
    state: str = states.PENDING
    _: KW_ONLY
    result: Any = None
    failure: Failure | None = None
    revert_failure: Failure | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    checkpoint: Any = None
    attempts: int = 0
    tries: list[dict[str, Any]] = field(default_factory=list)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    revision: int = 0

    def __post_init__(self) -> None:
        if not self.uuid:
            self.uuid = new_uuid()
        if not self.meta:
            self.meta = {}


@dataclass
class FlowDetail(_Record):
    """One run of one flow: its state, meta and task details (in the order added)."""

    _CHILDREN: ClassVar[str | None] = "tasks"

    name: str
    uuid: str = None  # type: ignore[assignment]
    type: str | None = None
    state: str = states.PENDING
    meta: dict[str, Any] = field(default_factory=dict)
    _: KW_ONLY
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    revision: int = 0
    #: ``host:pid:start`` of the engine holding the flow, None when nobody does.
    owner: str | None = None
    #: +1 each time an engine takes the flow (0: never run); stale writers are fenced out.
    fence: int = 0
    #: Until when ``owner`` holds the flow without a heartbeat (aware UTC), or None.
    lease_expires_at: datetime | None = None
    _tasks: dict[str, TaskDetail] = field(default_factory=dict, repr=False, compare=True)

    def __post_init__(self) -> None:
        if not self.uuid:
            self.uuid = new_uuid()
        if not self.meta:
            self.meta = {}

    def _children(self) -> dict[str, TaskDetail]:
        return self._tasks

    def add(self, task_detail: TaskDetail) -> None:
        """Add (or replace, same uuid) a task detail."""
        self._tasks[task_detail.uuid] = task_detail

    def find(self, uuid: str) -> TaskDetail | None:
        """Return the task detail with ``uuid``, or None."""
        return self._tasks.get(uuid)

    def remove(self, uuid: str) -> TaskDetail | None:
        """Take the task detail with ``uuid`` out (the store is not touched); None if absent."""
        return self._tasks.pop(uuid, None)

    def find_by_name(self, name: str) -> TaskDetail | None:
        """Return the first task detail named ``name``, or None."""
        return next((td for td in self._tasks.values() if td.name == name), None)

    @property
    def tasks(self) -> list[TaskDetail]:
        """The task details in the order they were added."""
        return list(self._tasks.values())

    def __iter__(self) -> Iterator[TaskDetail]:
        return iter(list(self._tasks.values()))

    def __len__(self) -> int:
        return len(self._tasks)


@dataclass
class LogBook(_Record):
    """A collection of flow details (usually one job) with its own meta and timestamps."""

    _CHILDREN: ClassVar[str | None] = "flows"

    name: str
    uuid: str = None  # type: ignore[assignment]
    meta: dict[str, Any] = field(default_factory=dict)
    _: KW_ONLY
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    revision: int = 0
    _flows: dict[str, FlowDetail] = field(default_factory=dict, repr=False, compare=True)

    def __post_init__(self) -> None:
        if not self.uuid:
            self.uuid = new_uuid()
        if not self.meta:
            self.meta = {}

    def _children(self) -> dict[str, FlowDetail]:
        return self._flows

    def add(self, flow_detail: FlowDetail) -> None:
        """Add (or replace, same uuid) a flow detail."""
        self._flows[flow_detail.uuid] = flow_detail

    def find(self, uuid: str) -> FlowDetail | None:
        """Return the flow detail with ``uuid``, or None."""
        return self._flows.get(uuid)

    @property
    def flows(self) -> list[FlowDetail]:
        """The flow details in the order they were added."""
        return list(self._flows.values())

    def __iter__(self) -> Iterator[FlowDetail]:
        return iter(list(self._flows.values()))

    def __len__(self) -> int:
        return len(self._flows)


_CHILD_CLASSES: dict[type, type[Any]] = {LogBook: FlowDetail, FlowDetail: TaskDetail}
