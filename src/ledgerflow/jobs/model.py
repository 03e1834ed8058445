"""The ``Job`` record, its states, and the checks ``post`` makes before writing anything."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Final

from ledgerflow import serialization

__all__ = [
    "CANCELLED",
    "CLAIMED",
    "DONE",
    "ENDED",
    "FAILED",
    "JOB_STATES",
    "READY",
    "Job",
    "PostRequest",
    "check_post",
]

READY: Final = "READY"
CLAIMED: Final = "CLAIMED"
DONE: Final = "DONE"
FAILED: Final = "FAILED"
CANCELLED: Final = "CANCELLED"
JOB_STATES: Final = (READY, CLAIMED, DONE, FAILED, CANCELLED)
#: States a job never leaves on its own (``retry`` brings FAILED/CANCELLED back).
ENDED: Final = frozenset({DONE, FAILED, CANCELLED})

_FACTORY: Final = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_ENGINES: Final = ("serial", "parallel")
_SAVES: Final = ("always", "batched", "final")


@dataclass
class Job:
    """One unit of work on a board: a flow detail of its own, claimed by one conductor."""

    uuid: str
    name: str
    state: str
    book_uuid: str
    flow_uuid: str
    priority: int
    key: str | None
    attempts: int
    max_attempts: int
    owner: str | None
    created_at: datetime
    available_at: datetime
    last_error: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: keys are the attribute names, times ISO-8601 text."""
        data: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            data[item.name] = value.isoformat() if isinstance(value, datetime) else value
        return data


#: A ``Job``'s fields in order: what the boards store and read back of each job.
JOB_FIELDS: Final = tuple(item.name for item in fields(Job))


@dataclass(frozen=True)
class PostRequest:
    """What ``board.post`` was asked for, checked and normalised."""

    factory: str
    store: dict[str, Any]
    name: str
    priority: int
    delay: float
    key: str | None
    max_attempts: int
    engine: str
    save: str

    def flow_meta(self) -> dict[str, Any]:
        """The flow detail's meta: what ``lf.resume`` needs to rebuild and run the flow."""
        return {
            "factory": self.factory,
            "store": self.store,
            "engine": self.engine,
            "save": self.save,
            "max_workers": None,
            "lease": None,
        }


def _factory_text(factory: str | Callable[..., Any]) -> str:
    if isinstance(factory, str):
        text = factory.strip()
    elif callable(factory):
        module = getattr(factory, "__module__", None)
        qualname = getattr(factory, "__qualname__", None)
        if not module or not qualname or "<" in qualname or module == "__main__":
            raise ValueError(
                f"factory {factory!r} has no import path a conductor could use: "
                "post a module-level function, or its 'package.module:function' text"
            )
        text = f"{module}:{qualname}"
    else:
        raise TypeError(f"factory must be 'package.module:function' or a callable, not {factory!r}")
    if not _FACTORY.match(text):
        raise ValueError(f"factory must look like 'package.module:function', not {factory!r}")
    return text


def _integer(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an integer, not {value!r}")
    return value


def _choice(value: Any, what: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}, not {value!r}")
    return str(value)


def _optional_text(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > 255:
        raise TypeError(f"{what} must be a non-empty string of at most 255 characters or None")
    return value


def check_post(
    factory: str | Callable[..., Any],
    *,
    store: Mapping[str, Any] | None,
    name: str | None,
    priority: int,
    delay: float,
    key: str | None,
    max_attempts: int,
    engine: str,
    save: str,
) -> PostRequest:
    """Check every argument of ``post`` (TypeError / ValueError naming it) before any write."""
    text = _factory_text(factory)
    if store is not None and not isinstance(store, Mapping):
        raise TypeError(f"store must be a mapping or None, not {type(store).__name__}")
    values = dict(store or {})
    serialization.check(values, "store")
    if isinstance(delay, bool) or not isinstance(delay, int | float):
        raise TypeError(f"delay must be a number of seconds, not {delay!r}")
    if not delay >= 0:  # NaN too
        raise ValueError(f"delay must be >= 0 seconds, not {delay!r}")
    if _integer(max_attempts, "max_attempts") < 1:
        raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
    return PostRequest(
        factory=text,
        store=values,
        name=_optional_text(name, "name") or text,
        priority=_integer(priority, "priority"),
        delay=float(delay),
        key=_optional_text(key, "key"),
        max_attempts=max_attempts,
        engine=_choice(engine, "engine", _ENGINES),
        save=_choice(save, "save", _SAVES),
    )
