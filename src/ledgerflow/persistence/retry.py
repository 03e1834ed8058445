"""Ride out a store that blinks: retry an engine's commit until it lands, or the window ends.

A dropped connection, a server restart or SQLite's busy lock surface as ``StorageError``;
the commit is tried again with exponential backoff for up to ``window`` seconds (each
attempt reconnects: a broken pinned connection is replaced).  A retry is idempotent by
revision: when an attempt that seemed to fail had in fact committed, the next one meets
``ConflictError``; if the store then holds exactly what we wrote at our revision + 1, the
commit is taken as landed instead of being applied twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from ledgerflow.errors import (
    ConflictError,
    CorruptRecordError,
    FencedOut,
    MissingDriverError,
    SchemaVersionError,
    StorageError,
)
from ledgerflow.models import FlowDetail, TaskDetail
from ledgerflow.persistence.base import Connection, Fence

__all__ = ["DEFAULT_WINDOW", "commit"]

LOG = logging.getLogger("ledgerflow.engine")
DEFAULT_WINDOW: Final = 60.0
_FIRST_DELAY: Final = 0.05
_MAX_DELAY: Final = 2.0
#: Failures no retry can fix: the store is reachable and answered for good.
_FINAL: Final = (SchemaVersionError, CorruptRecordError, MissingDriverError)
#: Fields a comparison of what we wrote with what is stored leaves out.
_UNCOMPARED: Final = frozenset({"revision", "owner", "fence", "lease_expires_at", "tasks"})

Detail = FlowDetail | TaskDetail


def _transient(exc: StorageError) -> bool:
    return not isinstance(exc, _FINAL) and "max_allowed_packet" not in str(exc)


def commit(
    conn: Connection,
    write: Callable[..., Any],
    details: Sequence[Detail],
    fence: Fence | None,
    window: float,
) -> None:
    """Call ``write(*details, fence=fence)`` until it lands; StorageError past ``window``."""
    deadline = time.monotonic() + window
    delay = _FIRST_DELAY
    blinked = False
    while True:
        try:
            write(*details, fence=fence)
            return
        except FencedOut:
            raise
        except ConflictError:
            if blinked and _landed(conn, details):
                return
            raise
        except StorageError as exc:
            left = deadline - time.monotonic()
            if not _transient(exc) or left <= 0:
                raise
            if not blinked:
                LOG.warning("store unreachable, retrying for up to %.0f s: %s", window, exc)
            blinked = True
            time.sleep(min(delay, left))
            delay = min(delay * 2, _MAX_DELAY)


def _comparable(detail: Detail) -> dict[str, Any]:
    return {k: v for k, v in detail.to_dict().items() if k not in _UNCOMPARED}


def _landed(conn: Connection, details: Sequence[Detail]) -> bool:
    """Whether an earlier attempt committed exactly ``details`` (then bump their revisions)."""
    stored: list[Detail] = []
    for detail in details:
        if isinstance(detail, TaskDetail):
            stored.append(conn.get_task_details(detail.uuid))
        else:
            stored.append(conn.get_flow_details(detail.uuid))
    for mine, theirs in zip(details, stored, strict=True):
        if theirs.revision != mine.revision + 1 or _comparable(theirs) != _comparable(mine):
            return False
    for mine, theirs in zip(details, stored, strict=True):
        mine.revision = theirs.revision
        if isinstance(mine, FlowDetail) and isinstance(theirs, FlowDetail):
            for task in mine:  # task details the write inserted
                if task.revision == 0 and (found := theirs.find(task.uuid)) is not None:
                    task.revision = found.revision
    LOG.info("a commit retried after an outage had landed already: not applied twice")
    return True
